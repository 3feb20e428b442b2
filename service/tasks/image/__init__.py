"""The image-classification task, torch-free (Pillow and numpy): the model's input geometry, safe
decoding of untrusted JPEG, PNG and WebP bytes, validation of preprocessed image tensors, and the
client side (image files, labeled folders, ``init --task image``). Training is ``training``'s."""

from service.tasks.image._client import ImageClient
from service.tasks.image._container import ALLOWED_FORMATS, Container, inspect
from service.tasks.image._decode import check_geometry, check_size, decode_image, decode_pixels
from service.tasks.image._definition import create_image_definition
from service.tasks.image._files import LabeledImage, read_labeled_images
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
    "ImageClient",
    "ImageFeeds",
    "ImageInputs",
    "ImageOptions",
    "ImageSpec",
    "LabeledImage",
    "check_geometry",
    "check_size",
    "create_image_definition",
    "decode_image",
    "decode_pixels",
    "inspect",
    "preprocessed_batch",
    "read_labeled_images",
    "read_seed_images",
]
