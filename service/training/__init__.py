"""Building model versions with torch: the only package that imports torch."""

from service.training._build import build_first_version, create_definition
from service.training._export import ExportError

__all__ = ["ExportError", "build_first_version", "create_definition"]
