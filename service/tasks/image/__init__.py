"""The image-classification task's serving side, torch-free (Pillow and numpy): the model's input
geometry, safe decoding of untrusted JPEG, PNG and WebP bytes, and validation of preprocessed
image tensors."""

from service.tasks.image._container import ALLOWED_FORMATS, Container, inspect
from service.tasks.image._decode import check_geometry, check_size, decode_image, decode_pixels
from service.tasks.image._inputs import INPUT, ImageInputs
from service.tasks.image._options import ImageOptions
from service.tasks.image._seed import read_seed_images
from service.tasks.image._spec import IMAGENET_MEAN, IMAGENET_STD, DecodeLimits, ImageSpec
from service.tasks.image._task import NAME, ONNX_INPUT, ImageClassification, ImageFeeds
from service.tasks.image._tensors import preprocessed_batch

__all__ = [
    "ALLOWED_FORMATS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INPUT",
    "NAME",
    "ONNX_INPUT",
    "Container",
    "DecodeLimits",
    "ImageClassification",
    "ImageFeeds",
    "ImageInputs",
    "ImageOptions",
    "ImageSpec",
    "check_geometry",
    "check_size",
    "decode_image",
    "decode_pixels",
    "inspect",
    "preprocessed_batch",
    "read_seed_images",
]
