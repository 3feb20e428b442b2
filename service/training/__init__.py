"""Building model versions with torch, for every task: the fine-tune job process, the fitting,
checks and judging every task shares; each task's own training lives in its task package."""

from service.training._checks import ExportError
from service.training._dispatch import build_first_version

__all__ = ["ExportError", "build_first_version"]
