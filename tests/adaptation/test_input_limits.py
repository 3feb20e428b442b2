"""Caller input that is too long is refused INVALID_ARGUMENT with a short message.

Before, a 100 KB label or id was echoed whole: the status trailer outgrew gRPC's metadata limit
(the client saw RESOURCE_EXHAUSTED, not the reason) and the server wrote a 1 MB log line. The
real AdaptationService behind the real api, over gRPC.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from fake_adaptation import FakeServer
from test_job_races import LABELS, MODEL, Loop

from service.api._proto.loopserve.v1 import adaptation_pb2 as pb
from service.api._proto.loopserve.v1.adaptation_pb2_grpc import AdaptationStub
from service.config import AdaptationRecipe

HUGE = 100_000
MAX_MESSAGE = 300


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Loop]:
    running = Loop(tmp_path, AdaptationRecipe(min_new_samples=1000))
    yield running
    running.service.stop(5)
    running.store.close()


@pytest.fixture
def stub(loop: Loop) -> Iterator[AdaptationStub]:
    server = FakeServer(loop.service)
    with grpc.insecure_channel(server.address) as channel:
        yield AdaptationStub(channel)
    server.stop()


def refused(call: Callable[[], object]) -> str:
    with pytest.raises(grpc.RpcError) as info:
        call()
    details = info.value.details() or ""
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, details
    assert len(details) < MAX_MESSAGE, details
    return details


def add(stub: AdaptationStub, model: str = MODEL, **fields: str) -> Callable[[], object]:
    sample = pb.Sample(**{"text": "hello there", "label": LABELS[0], **fields})
    return lambda: stub.AddSamples(pb.AddSamplesRequest(model=model, samples=[sample]), timeout=10)


@pytest.mark.parametrize(
    ("field", "what", "limit"),
    [("label", "label", 128), ("id", "id", 128), ("prediction_id", "prediction_id", 144)],
)
def test_a_100kb_sample_field_is_invalid_argument_with_a_short_message(
    loop: Loop, stub: AdaptationStub, field: str, what: str, limit: int
) -> None:
    details = refused(add(stub, **{field: "x" * HUGE}))

    assert details == (
        f"sample[0] {what} 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…' (100000 characters) is "
        f"too long; at most {limit} characters"
    )
    assert loop.store.count(MODEL) == 0


def test_a_100kb_model_name_is_invalid_argument_with_a_short_message(stub: AdaptationStub) -> None:
    name = "m" * HUGE
    for call in (
        add(stub, model=name),
        lambda: stub.GetModelStatus(pb.GetModelStatusRequest(model=name), timeout=10),
        lambda: stub.ListVersions(pb.ListVersionsRequest(model=name), timeout=10),
        lambda: stub.Rollback(pb.RollbackRequest(model=name, version=1), timeout=10),
    ):
        assert refused(call).startswith("model name 'mmmm")


def test_an_unknown_label_is_quoted_truncated(stub: AdaptationStub) -> None:
    details = refused(add(stub, label="y" * 120))

    assert details.startswith(f"sample[0] label '{'y' * 80}…' (120 characters) is not one of")


def test_a_long_unprintable_label_is_quoted_truncated(stub: AdaptationStub) -> None:
    details = refused(add(stub, label="\x01" * 100))

    assert details.startswith("sample[0] label '\\x01\\x01")
    assert details.endswith("…' (100 characters) must be non-empty, trimmed, printable")


def test_a_3mb_text_is_refused_without_echo(loop: Loop, stub: AdaptationStub) -> None:
    # Under the transport's 4 MiB message limit, so our own check answers.
    details = refused(add(stub, text="t" * 3_000_000))

    assert details == "sample[0] text is longer than 16384 bytes"
    assert loop.store.count(MODEL) == 0


def test_a_10mb_message_is_refused_by_the_transport(loop: Loop, stub: AdaptationStub) -> None:
    with pytest.raises(grpc.RpcError) as info:
        add(stub, text="t" * 10_000_000)()

    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in (info.value.details() or "")
    assert loop.store.count(MODEL) == 0


def test_too_many_samples_are_refused_before_they_are_converted(stub: AdaptationStub) -> None:
    sample = pb.Sample(text="hi", label=LABELS[0])
    request = pb.AddSamplesRequest(model=MODEL, samples=[sample] * 200_000)

    details = refused(lambda: stub.AddSamples(request, timeout=10))

    assert details == "200000 samples in one call; at most 1000"
