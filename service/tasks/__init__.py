"""Tasks: one package per modality behind one contract, registered here by name.

    from service import tasks
    task = tasks.get(definition.task)   # ConfigError naming the known tasks

Adding a modality is one package under ``service/tasks/`` (its serving side, its client side,
and its training side in a ``training`` subpackage that ``Task.training`` names) and one
``register`` line below.
"""

from __future__ import annotations

from collections.abc import Callable

from service.domain.versions import DEFAULT_TASK
from service.errors import ConfigError, quote
from service.registry import VersionInfo
from service.runtime import LoadedVersion, SessionOptions
from service.tasks._client import (
    CANDIDATE_INFO_COLUMNS,
    REQUEST_BYTES,
    CandidateColumn,
    ClientHelp,
    ClientInputs,
    ClientItem,
    ClientSide,
    FileError,
    LabeledInputs,
    csv_header,
)
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


def in_order() -> list[Task]:
    """Every task, the default first (what a model that names none is), then as registered."""
    default = get(DEFAULT_TASK)
    return [default, *(task for task in _TASKS.values() if task is not default)]


def by_option(option: str) -> Task:
    """The task whose client side ``init --task`` names ``option``."""
    for task in in_order():
        if task.client().help.option == option:
            return task
    known = ", ".join(repr(task.client().help.option) for task in in_order())
    raise ConfigError(f"unknown task {quote(option)}; known tasks: {known}")


def recognising(test: Callable[[ClientSide], bool]) -> Task:
    """The first task other than the default whose client side passes ``test`` (recognises a
    file, or candidates' payloads), else the default task: texts are what a client sends when
    nothing says otherwise."""
    default = get(DEFAULT_TASK)
    return next((t for t in in_order() if t is not default and test(t.client())), default)


def open_version(model: str, info: VersionInfo, options: SessionOptions) -> LoadedVersion:
    """A session on a version's serving file, with its task's preprocessor. Blocking."""
    preprocessor = get(info.meta.task).preprocessor(info.path, info.meta)
    return LoadedVersion(model, info.version, info.serving_file, preprocessor, info.labels, options)


register(TextClassification())
register(ImageClassification())

__all__ = [
    "ALL_OUTPUTS",
    "CANDIDATE_INFO_COLUMNS",
    "REQUEST_BYTES",
    "CandidateColumn",
    "ClassifierOutputs",
    "ClientHelp",
    "ClientInputs",
    "ClientItem",
    "ClientSide",
    "FileError",
    "InputContract",
    "LabeledInputs",
    "RequestLimits",
    "Task",
    "by_option",
    "csv_header",
    "get",
    "in_order",
    "names",
    "open_version",
    "recognising",
    "register",
]
