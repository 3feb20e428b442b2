"""ImageNet CNN backbones in plain torch (torchvision and timm do not install beside the CPU torch
wheel), named as torchvision and the EfficientNet-Lite reference name their modules so that
their state dicts load unchanged; local and bundled weights; ONNX export of backbone + head;
static int8 calibrated on images (dynamic int8 is refused for CNNs)."""

from service.training.vision._backbone import (
    ARCHITECTURES,
    Architecture,
    SplitFeatures,
    architecture,
    build_backbone,
    create_network,
)
from service.training.vision._build import build_image_version
from service.training.vision._common import VisionNetwork
from service.training.vision._export import (
    ImageClassifier,
    export_onnx,
    parity_check,
)
from service.training.vision._job import train_image_candidate
from service.training.vision._quantize import (
    QUANTIZATION_METHODS,
    check_quantization,
    quantize_images,
    top1_agreement,
)
from service.training.vision._reference import BackboneReference, parse_backbone
from service.training.vision._trainer import freeze_batchnorm
from service.training.vision._weights import BUNDLED, bundled, load_state, read_state, resolve

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
    "build_image_version",
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
    "train_image_candidate",
]
