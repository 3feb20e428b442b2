"""Tasks: one package per modality behind one contract, registered here by name.

    from service import tasks
    task = tasks.get(definition.task)   # ConfigError naming the known tasks

Adding a modality is one package under ``service/tasks/`` (its serving side, and its training
side in a ``training`` subpackage that ``Task.training`` names) and one ``register`` line below.
"""

from __future__ import annotations

from service.errors import ConfigError, quote
from service.registry import VersionInfo
from service.runtime import LoadedVersion, SessionOptions
from service.tasks._contract import InputContract, RequestLimits, Task
from service.tasks._outputs import ALL_OUTPUTS, ClassifierOutputs
from service.tasks.image import ImageClassification
from service.tasks.text import TextClassification

_TASKS: dict[str, Task] = {}


def register(task: Task) -> None:
    if task.name in _TASKS:
        raise ValueError(f"task {task.name!r} is registered twice")
    _TASKS[task.name] = task


def get(name: str) -> Task:
    try:
        return _TASKS[name]
    except KeyError:
        known = ", ".join(map(repr, sorted(_TASKS)))
        raise ConfigError(f"unknown task {quote(name)}; known tasks: {known}") from None


def names() -> list[str]:
    return sorted(_TASKS)


def open_version(model: str, info: VersionInfo, options: SessionOptions) -> LoadedVersion:
    """A session on a version's serving file, with its task's preprocessor. Blocking."""
    preprocessor = get(info.meta.task).preprocessor(info.path, info.meta)
    return LoadedVersion(model, info.version, info.serving_file, preprocessor, info.labels, options)


register(TextClassification())
register(ImageClassification())

__all__ = [
    "ALL_OUTPUTS",
    "ClassifierOutputs",
    "InputContract",
    "RequestLimits",
    "Task",
    "get",
    "names",
    "open_version",
    "register",
]
