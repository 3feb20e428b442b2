"""``loopserve predict`` and ``loopserve label``: a task's inputs sent in bounded requests.

Where the task reports its inputs one by one (files), an input that cannot be read or that the
server refuses is reported with the reason and the rest go on; otherwise a refusal fails the
command.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from service.cli._labels import label_batches, size_batches
from service.domain.loop import AddOutcome, NewSample
from service.tasks import ClientInputs, ClientItem, ClientSide, FileError, LabeledInputs

if TYPE_CHECKING:
    from service.api.adaptation_client import AdaptationClient
    from service.api.client import Classification, InferenceClient

INVALID_ARGUMENT = "INVALID_ARGUMENT"

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class LabelReport:
    accepted: int
    duplicates: int
    ids: list[str]
    errors: list[FileError]


def classify_inputs(
    client: InferenceClient, model: str, side: ClientSide, inputs: ClientInputs
) -> tuple[list[Classification], list[FileError]]:
    """Classify ``inputs``: all in one request, or in batches of ``side.per_request`` (about
    LABEL_BATCH_BYTES at most) where each input is reported on its own."""
    errors = list(inputs.errors)

    def classify(items: list[ClientItem]) -> list[Classification]:
        return client.classify(model, side.request(items), [item.name for item in items])

    if not side.report_each:
        return classify(inputs.items), errors
    results: list[Classification] = []
    for start, stop in size_batches([len(i.value) for i in inputs.items], side.per_request):
        batch = inputs.items[start:stop]
        results.extend(_each_refused_alone(batch, classify, lambda item: item.name, errors))
    return results, errors


def label_inputs(
    client: AdaptationClient, model: str, side: ClientSide, inputs: LabeledInputs
) -> LabelReport:
    """Post ``inputs`` as labeled samples in batches of at most LABEL_BATCH samples and about
    LABEL_BATCH_BYTES."""
    if side.report_each:
        return _label_each(client, model, inputs)
    from service.api.client import ClientError

    accepted = duplicates = 0
    ids: list[str] = []
    for start, stop in label_batches(inputs.samples):
        try:
            outcome = client.add_samples(model, inputs.samples[start:stop])
        except ClientError as exc:
            if not start:
                raise
            stored = f"the first {start} samples were sent and stored before this batch"
            message = str(exc).removeprefix(f"{exc.code}: ")
            raise ClientError(exc.code, f"{message} ({stored})") from None
        accepted += outcome.accepted
        duplicates += outcome.duplicates
        ids.extend(outcome.ids)
    return LabelReport(accepted, duplicates, ids, [])


def _label_each(client: AdaptationClient, model: str, inputs: LabeledInputs) -> LabelReport:
    errors = list(inputs.errors)
    named = list(zip(inputs.names, inputs.samples, strict=True))
    accepted = duplicates = 0
    ids: list[str] = []

    def add(items: list[tuple[str, NewSample]]) -> list[AddOutcome]:
        return [client.add_samples(model, [s for _, s in items])]

    for start, stop in label_batches(inputs.samples):
        for outcome in _each_refused_alone(named[start:stop], add, lambda i: i[0], errors):
            accepted += outcome.accepted
            duplicates += outcome.duplicates
            ids.extend(outcome.ids)
    return LabelReport(accepted, duplicates, ids, errors)


def _each_refused_alone(
    batch: list[T],
    send: Callable[[list[T]], list[R]],
    name: Callable[[T], str],
    errors: list[FileError],
) -> list[R]:
    """``send(batch)``; when the server refuses it as invalid, each item again on its own, so
    that each refused file is reported with the server's message and the others still go."""
    from service.api.client import ClientError

    try:
        return send(batch)
    except ClientError as exc:
        if exc.code != INVALID_ARGUMENT:
            raise
        if len(batch) == 1:
            errors.append(FileError(name(batch[0]), str(exc)))
            return []
    results: list[R] = []
    for item in batch:
        results.extend(_each_refused_alone([item], send, name, errors))
    return results
