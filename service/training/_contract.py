"""A task's training side, found through the task registry: the module a task names
(``Task.training``) implements :class:`TaskTraining`. It is imported only here, when a model of
that task is built or fine-tuned, so the serving process, which reads the same registry, never
loads torch."""

from __future__ import annotations

import importlib
from typing import Protocol, runtime_checkable

from service import tasks
from service.config import ModelDefinition
from service.domain.finetune import FineTuneSpec
from service.registry import ModelRegistry, VersionInfo
from service.training._candidate import Candidate
from service.training._fitting import Progress


@runtime_checkable
class TaskTraining(Protocol):
    """What ``service.training`` asks of a task's training module."""

    def build_first_version(
        self, definition: ModelDefinition, registry: ModelRegistry, progress: Progress
    ) -> VersionInfo:
        """``loopserve init``: train, export, check and publish version 1 (or the next number)
        from the seed data, and make it current when the model has none."""
        ...

    def train_candidate(self, spec: FineTuneSpec, log: Progress) -> Candidate:
        """A fine-tune job's training: continue from the spec's base version, write the
        candidate's files into ``spec.staging_dir``, and hand candidate and base version to the
        job's judging, which is the same for every task."""
        ...


MEMBERS = tuple(name for name in vars(TaskTraining) if not name.startswith("_"))


def task_training(task: str) -> TaskTraining:
    """The training module of the registered ``task`` (ConfigError for an unknown task), imported
    on first use; TypeError when it lacks a member of :class:`TaskTraining`."""
    path = tasks.get(task).training
    module = importlib.import_module(path)
    if not isinstance(module, TaskTraining):
        missing = ", ".join(name for name in MEMBERS if not callable(getattr(module, name, None)))
        raise TypeError(f"task {task!r}: its training module {path} lacks {missing}")
    return module


def build_first_version(
    definition: ModelDefinition, registry: ModelRegistry, progress: Progress
) -> VersionInfo:
    """Version 1 (or the next number) of ``definition``, built by its task's training."""
    return task_training(definition.task).build_first_version(definition, registry, progress)
