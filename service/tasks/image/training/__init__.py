"""The image-classification task's training side (torch): its first version from seed images and
a fine-tune job's candidate. ImageNet CNN backbones in plain torch (torchvision and timm do not
install beside the CPU torch wheel), named as torchvision and the EfficientNet-Lite reference
name their modules so that their state dicts load unchanged; local and bundled weights; ONNX
export of backbone + head; static int8 calibrated on images (dynamic int8 is refused for CNNs)."""

from service.tasks.image.training._backbone import (
    ARCHITECTURES,
    Architecture,
    SplitFeatures,
    architecture,
    build_backbone,
    create_network,
)
from service.tasks.image.training._build import build_first_version
from service.tasks.image.training._common import VisionNetwork
from service.tasks.image.training._export import (
    ImageClassifier,
    export_onnx,
    parity_check,
)
from service.tasks.image.training._job import train_candidate
from service.tasks.image.training._quantize import (
    QUANTIZATION_METHODS,
    check_quantization,
    quantize_images,
    top1_agreement,
)
from service.tasks.image.training._reference import BackboneReference, parse_backbone
from service.tasks.image.training._trainer import freeze_batchnorm
from service.tasks.image.training._weights import BUNDLED, bundled, load_state, read_state, resolve

__all__ = [
    "ARCHITECTURES",
    "BUNDLED",
    "QUANTIZATION_METHODS",
    "Architecture",
    "BackboneReference",
    "ImageClassifier",
    "SplitFeatures",
    "VisionNetwork",
    "architecture",
    "build_backbone",
    "build_first_version",
    "bundled",
    "check_quantization",
    "create_network",
    "export_onnx",
    "freeze_batchnorm",
    "load_state",
    "parity_check",
    "parse_backbone",
    "quantize_images",
    "read_state",
    "resolve",
    "top1_agreement",
    "train_candidate",
]
