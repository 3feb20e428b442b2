"""The training side of a model's task: which package builds its first version and trains a
fine-tune job's candidate."""

from __future__ import annotations

from service.config import ModelDefinition
from service.domain.finetune import FineTuneSpec
from service.registry import ModelRegistry, VersionInfo
from service.tasks import image as image_task
from service.tasks.image import training as image_training
from service.tasks.text import training as text_training
from service.training._candidate import Candidate
from service.training._fitting import Progress


def build_first_version(
    definition: ModelDefinition, registry: ModelRegistry, progress: Progress
) -> VersionInfo:
    """Train, export, check and publish version 1 (or the next number), and make it current."""
    if definition.task == image_task.NAME:
        return image_training.build_first_version(definition, registry, progress)
    return text_training.build_first_version(definition, registry, progress)


def train_candidate(spec: FineTuneSpec, log: Progress) -> Candidate:
    if spec.task == image_task.NAME:
        return image_training.train_candidate(spec, log)
    return text_training.train_candidate(spec, log)
