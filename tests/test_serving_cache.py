"""A served model's response cache ([serving] cache): repeated inputs answered from memory by the
serving version, dropped at a hot swap, counted, off by default, and logged for delayed labels."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_MODEL, write_tiny_definition

from service.adaptation.predictions import PredictionLog
from service.config import load_model_definition
from service.metrics import Metrics
from service.registry import ModelRegistry
from service.serving import ServedModel
from service.types import InferenceRequest, InferenceResponse, Tensor


def request(request_id: str, *texts: bytes, outputs: tuple[str, ...] = ()) -> InferenceRequest:
    tensor = Tensor("text", "BYTES", (len(texts),), list(texts))
    return InferenceRequest(TINY_MODEL, "", request_id, [tensor], list(outputs))


class Served:
    """The tiny model served in this process, with its metrics and prediction log."""

    def __init__(self, models: Path, state: Path, **serving: object) -> None:
        write_tiny_definition(models, Path(str(serving.pop("backbone"))), **serving)
        self.metrics = Metrics()
        self.predictions = PredictionLog()
        self.model = ServedModel(
            load_model_definition(models, TINY_MODEL),
            ModelRegistry(state, TINY_MODEL),
            self.metrics,
            on_predictions=self.predictions.record,
        )
        self.model.start()

    def infer(self, message: InferenceRequest) -> InferenceResponse:
        return asyncio.run(self.model.infer(message))

    def sample(self, name: str, **labels: str) -> float | None:
        value = self.metrics.registry.get_sample_value(name, {"model": TINY_MODEL, **labels})
        return None if value is None else float(value)

    def cache(self, outcome: str) -> float | None:
        return self.sample("loopserve_response_cache_requests_total", outcome=outcome)

    @property
    def batches(self) -> float | None:
        return self.sample("loopserve_batch_size_count")


@pytest.fixture
def serve(tmp_path: Path, state_dir: Path, tiny_backbone: Path) -> Iterator[object]:
    started: list[Served] = []

    def make(**serving: object) -> Served:
        served = Served(
            tmp_path / f"models-{len(started)}", state_dir, backbone=tiny_backbone, **serving
        )
        started.append(served)
        return served

    yield make
    for served in started:
        served.model.stop(5)


def outputs(response: InferenceResponse) -> dict[str, object]:
    return {
        t.name: (t.data if isinstance(t.data, list) else t.data.tolist(), t.parameters)
        for t in response.outputs
    }


def test_a_repeated_input_is_answered_from_the_cache(serve: object) -> None:
    served: Served = serve(cache=True)
    first = served.infer(request("a", b"hello team", b"why is it late"))
    again = served.infer(request("b", b"hello team", b"why is it late"))
    assert outputs(again) == outputs(first)
    assert (again.id, again.version) == ("b", first.version)
    assert (served.cache("miss"), served.cache("hit"), served.batches) == (1, 1, 1)
    # Other outputs of the same inputs are cut from the kept answer; other inputs miss.
    with_embedding = served.infer(
        request("c", b"hello team", b"why is it late", outputs=("embedding", "label"))
    )
    assert [t.name for t in with_embedding.outputs] == ["embedding", "label"]
    assert outputs(with_embedding)["label"] == outputs(first)["label"]
    assert served.cache("hit") == 2
    served.infer(request("d", b"hello team"))
    assert (served.cache("miss"), served.batches) == (2, 2)
    assert served.sample("loopserve_response_cache_entries") == 2


def test_answers_from_the_cache_are_logged_for_delayed_labels(serve: object) -> None:
    served: Served = serve(cache=True)
    first = served.infer(request("first", b"my order is broken"))
    served.infer(request("cached", b"my order is broken"))
    served.infer(request("pair", b"my order is broken", b"hello team"))
    served.infer(request("pair-again", b"my order is broken", b"hello team"))
    assert served.cache("hit") == 2
    label = first.outputs[0].data[0].decode()
    record = served.predictions.lookup("cached")
    assert record is not None and (record.version, record.label) == (int(first.version), label)
    assert served.predictions.lookup("pair-again/0") == served.predictions.lookup("pair/0")
    assert served.predictions.lookup("pair-again/1") is not None


def test_a_hot_swap_drops_the_cached_answers(serve: object) -> None:
    served: Served = serve(cache=True)
    assert served.infer(request("a", b"hello team")).version == "1"
    assert served.sample("loopserve_response_cache_entries") == 1
    served.model.activate(2)
    assert served.sample("loopserve_response_cache_entries") == 0
    assert served.sample("loopserve_response_cache_bytes") == 0
    assert served.infer(request("b", b"hello team")).version == "2"
    assert (served.cache("miss"), served.cache("hit")) == (2, 0)
    served.model.activate(1, expected=2)  # a rollback drops them too
    assert served.infer(request("c", b"hello team")).version == "1"
    assert served.cache("hit") == 0


def test_the_cache_keeps_its_bound(serve: object) -> None:
    served: Served = serve(cache=True, cache_max_entries=2)
    for text in (b"hello team", b"why is it late", b"my order is broken", b"hello team"):
        served.infer(request("", text))
    assert served.sample("loopserve_response_cache_entries") == 2
    # "hello team" was the least recently used when the third text came: asked again, it missed.
    assert (served.cache("miss"), served.cache("hit")) == (4, 0)


def test_the_cache_is_off_by_default(serve: object) -> None:
    served: Served = serve()
    first = served.infer(request("a", b"hello team"))
    again = served.infer(request("b", b"hello team"))
    assert np.array_equal(first.outputs[1].data, again.outputs[1].data)
    assert served.batches == 2
    assert served.cache("hit") is None and served.cache("miss") is None
