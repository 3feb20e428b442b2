"""Building model versions with torch, for every task: the fine-tune job process and the fitting,
checks and judging every task shares. A task's own training lives in its task package
(``service/tasks/<task>/training``), found through the task registry (:func:`task_training`)."""

from service.training._checks import ExportError
from service.training._contract import TaskTraining, build_first_version, task_training

__all__ = ["ExportError", "TaskTraining", "build_first_version", "task_training"]
