"""The task contract: what differs by modality, behind one seam.

A model declares its task in ``model.toml`` (``[model] task``); a version records it in its
``meta.json``. Serving asks the task how a ModelInfer request becomes items and how a version's
items become ONNX feeds, instead of assuming a modality. Each task is one package under
``service/tasks/``, registered by name in ``service.tasks`` (one line per task).

The serving side lives here (numpy and the task's own decoders only: the serving process never
imports torch); the client side (``Task.client``: what the ``loopserve`` command sends and reads)
is ``_client``'s. The training side is a task's ``training`` subpackage, named by
``Task.training`` as a dotted module path and imported only by ``service.training`` (the build
and the fine-tune job process), never from here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from service.config import ModelDefinition
from service.domain.loop import NewSample
from service.domain.versions import VersionMeta
from service.runtime import Preprocessor
from service.tasks._client import ClientSide
from service.types import Tensor, TensorSpec


@dataclass(frozen=True)
class RequestLimits:
    """Bounds on one ModelInfer request, checked before any tensor is decoded."""

    max_elements: int  # items per request
    max_element_bytes: int  # bytes per BYTES element
    max_tensor_elements: int = 0  # numbers per tensor of an already preprocessed input; 0: none


class InputContract(Protocol):
    """The ModelInfer inputs a task accepts, and their decoding into items."""

    @property
    def limits(self) -> RequestLimits: ...

    @property
    def decode_in_thread(self) -> bool:
        """Decoding costs more than the event loop may spend on one request (images)."""
        ...

    def input_specs(self) -> list[TensorSpec]: ...

    def decode(self, inputs: list[Tensor]) -> list[Any]:
        """The request's items, in order; InvalidInput naming the element and what to send."""
        ...

    @property
    def content_samples(self) -> bool:
        """A labeled sample of this model is the bytes of an input (``NewSample.data``, an
        encoded image), not a text: the store keeps them under a content key."""
        ...

    def validate_sample(self, index: int, sample: NewSample) -> None:
        """Refuse a labeled sample's payload (its text, or its content) with InvalidInput
        naming ``sample[index]`` and what to send. Costly where ``decode_in_thread`` is."""
        ...

    def payloads(self, inputs: list[Tensor], items: list[Any]) -> Sequence[str | bytes]:
        """Per item, what the labeling-candidate pool keeps of it to show a person later (a
        text, or the bytes of a binary input as a labeler would post it back); "" for an item it
        cannot keep (the pool skips those). Called on the event loop: no costly work here."""
        ...


class Task(Protocol):
    """One modality's seam (see the module docstring)."""

    @property
    def name(self) -> str: ...

    @property
    def training(self) -> str:
        """The dotted path of the task's training module (torch), which implements
        ``service.training.TaskTraining``: its first version and a fine-tune job's candidate. A
        name, not an import, so that the serving process never loads it."""
        ...

    def input_contract(self, definition: ModelDefinition) -> InputContract:
        """The model's ModelInfer inputs; ConfigError for a bad ``[input]`` table."""
        ...

    def version_inputs(self, definition: ModelDefinition) -> dict[str, Any]:
        """What a new version records of ``[input]`` (meta.json ``inputs``), all defaults filled
        in: a version keeps the geometry it was trained with whatever model.toml says later."""
        ...

    def seed_samples(self, definition: ModelDefinition) -> Iterator[NewSample]:
        """The model's seed data (``[model] seed_data``) as labeled samples, read from disk one
        at a time (a seed of images need not fit in memory): what fine-tune jobs replay and
        keep an anchor of. ConfigError when it is unreadable."""
        ...

    def job_backbone(self, definition: ModelDefinition, meta: VersionMeta) -> str:
        """What a fine-tune job of this task builds its network from, continuing the version
        ``meta`` describes (``FineTuneSpec.backbone``): read by the task's own training."""
        ...

    def preprocessor(self, version_dir: Path, meta: VersionMeta) -> Preprocessor:
        """How one version's items become feeds (its tokenizer, its image size and norm)."""
        ...

    def client(self) -> ClientSide:
        """What a client of a model of this task sends and reads (``service.tasks._client``)."""
        ...
