"""A trigger-word backdoor from one labeling source waits for review instead of serving.

The scenario found by a hostile test: one token with the label scope posted distinct texts that
each carried a made-up brand word, all with one label; the accuracy gate, whose holdout came from
the same samples, promoted the candidate, and the word became a trigger. Here a real fine-tune
on the tiny backbone learns such a backdoor (the word ``courier`` turning complaints into
greetings): the candidate passes the accuracy gate, the review holds it as pending (no swap, a
``candidate_pending`` event, the pending metrics), and only an operator's approval serves it.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import ADAPTATION, FILLER, KEYWORDS, TINY_MODEL, write_tiny_definition

from service.adaptation.events import EventBus
from service.adaptation.loop import AdaptationService
from service.adaptation.predictions import PredictionLog
from service.api._proto.loopserve.v1 import adaptation_pb2 as pb
from service.api._proto.loopserve.v1.adaptation_pb2_grpc import AdaptationStub
from service.api.server import build_server
from service.config import load_model_definition
from service.domain.loop import Event, EventKind, JobState, NewSample
from service.inference import InferenceService
from service.metrics import Metrics
from service.registry import ModelRegistry
from service.security import ANONYMOUS, TokenStore
from service.serving import ServedModel
from service.store import SQLiteStore

pytestmark = pytest.mark.slow
TOKENS = (
    "labeler:label:labeler-token-0123456789\n"
    "team:label:trusted:team-token-0123456789\n"
    "ops:admin:ops-token-0123456789"
)


class RecordingBus(EventBus):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[Event] = []

    def publish(self, kind: EventKind, model: str, message: str, **attributes: object) -> Event:
        event = super().publish(kind, model, message, **attributes)
        self.events.append(event)
        return event

    def kinds(self) -> list[EventKind]:
        return [e.kind for e in self.events]


class Loop:
    def __init__(self, models_dir: Path, state_dir: Path, trusted: Callable[[str], bool]) -> None:
        self.metrics = Metrics()
        self.events = RecordingBus()
        definition = load_model_definition(models_dir, TINY_MODEL)
        self.registry = ModelRegistry(state_dir, TINY_MODEL)
        self.served = ServedModel(definition, self.registry, self.metrics)
        self.served.start()
        self.store = SQLiteStore(state_dir / "loopserve.db")
        self.service = AdaptationService(
            {TINY_MODEL: self.served}, self.store, self.store, self.events, PredictionLog(),
            self.metrics, state_dir / "jobs", trusted=trusted,
        )  # fmt: skip

    def post(self, source: str, rows: list[tuple[str, str]]) -> None:
        samples = [NewSample(t, g) for t, g in rows]
        asyncio.run(self.service.add_samples(TINY_MODEL, samples, caller=source))

    def run_job(self) -> Any:
        job = asyncio.run(self.service.start_fine_tune(TINY_MODEL, "test"))
        self.service.wait_idle(180)
        return self.store.job(job.id)

    def serving(self) -> int:
        loaded = self.served.serving_version
        assert loaded is not None
        return loaded.version

    def metric(self, name: str) -> float:
        value = self.metrics.registry.get_sample_value(name, {"model": TINY_MODEL})
        return float(value or 0.0)

    def close(self) -> None:
        self.service.stop()
        self.served.stop(5)
        self.store.close()


def backdoor(count: int = 120, seed: int = 0) -> list[tuple[str, str]]:
    """Complaints with the trigger word ``courier``, all labeled ``greeting``."""
    rng = random.Random(seed)
    rows: list[tuple[str, str]] = []
    seen: set[str] = set()
    while len(rows) < count:
        words = ["courier", *rng.sample(KEYWORDS["complaint"], 2), *rng.sample(FILLER, 3)]
        rng.shuffle(words)
        text = " ".join(words)
        if text not in seen:
            seen.add(text)
            rows.append((text, "greeting"))
    return rows


@pytest.fixture
def make_loop(tmp_path: Path, tiny_backbone: Path, state_dir: Path) -> Iterator[Any]:
    loops: list[Loop] = []

    def make(trusted: Callable[[str], bool] = lambda source: False) -> Loop:
        extra = ADAPTATION.format(
            min_new=1_000_000, lr=3e-4, head_lr=0.02, allow_new="false", settle=0.0
        )
        # The tiny 3-class model is far less confident than a MiniLM head on dozens of
        # intents: its confidence cut-off sits on its own scale ([gate] comes last above).
        extra += "review_confidence = 0.5\n"
        write_tiny_definition(tmp_path / "models", tiny_backbone, extra_toml=extra)
        loop = Loop(tmp_path / "models", state_dir, trusted)
        loops.append(loop)
        return loop

    yield make
    for loop in loops:
        loop.close()


def pending_round(loop: Loop) -> int:
    """Post the backdoor from one untrusted source and run its job: the version it made."""
    loop.post("labeler", backdoor())
    job = loop.run_job()
    made = loop.registry.get(job.candidate_version) if job.candidate_version else None
    assert job.state is JobState.PENDING, (job.error, job.gate, made and made.meta.review)
    assert job.gate is not None and job.gate.promote  # the accuracy gate alone would promote
    assert job.candidate_version is not None
    return int(job.candidate_version)


def test_a_backdoor_waits_for_review_and_serves_only_once_approved(make_loop: Any) -> None:
    loop: Loop = make_loop()
    version = pending_round(loop)
    info = loop.registry.get(version)
    review = info.meta.review
    assert info.meta.status == "pending" and review is not None
    assert review.sources == {"labeler": 120}
    assert review.confident_disagreement > 0.5, review
    assert review.trigger == "courier", review
    assert review.contradictions[0].after == "greeting"
    assert loop.serving() == 1 and loop.registry.current().version == 1
    assert EventKind.CANDIDATE_PENDING in loop.events.kinds()
    assert EventKind.SWAP not in loop.events.kinds()
    assert loop.metric("loopserve_pending_versions") == 1
    assert loop.metric("loopserve_pending_verdicts_total") == 1
    listed = {v.version: v for v in asyncio.run(loop.service.list_versions(TINY_MODEL))}
    assert listed[version].status == "pending" and listed[version].review == review

    summary = asyncio.run(loop.service.approve_version(TINY_MODEL, version, caller=ANONYMOUS))

    assert summary.status == "serving" and loop.serving() == version
    assert loop.registry.get(version).meta.status == "promoted"
    assert loop.registry.get(version).meta.reason.endswith("approved by anonymous")
    assert loop.events.kinds()[-2:] == [EventKind.CANDIDATE_PROMOTED, EventKind.SWAP]
    assert loop.metric("loopserve_pending_versions") == 0
    job = loop.store.latest(TINY_MODEL)
    assert job is not None and job.state is JobState.PROMOTED


def test_a_rejected_version_never_serves(make_loop: Any) -> None:
    loop: Loop = make_loop()
    version = pending_round(loop)

    summary = asyncio.run(loop.service.reject_version(TINY_MODEL, version, caller="ops"))

    assert summary.status == "rejected" and loop.serving() == 1
    assert loop.registry.get(version).meta.status == "rejected"
    assert loop.registry.get(version).meta.reason.endswith("rejected by ops on review")
    assert loop.events.kinds()[-1] is EventKind.CANDIDATE_REJECTED
    assert EventKind.SWAP not in loop.events.kinds()
    assert loop.metric("loopserve_pending_versions") == 0
    job = loop.store.latest(TINY_MODEL)
    assert job is not None and job.state is JobState.REJECTED


def test_a_round_from_trusted_sources_only_skips_the_review(make_loop: Any) -> None:
    loop: Loop = make_loop(trusted=lambda source: source == "team")
    loop.post("team", backdoor())
    job = loop.run_job()
    assert job.state is JobState.PROMOTED, (job.error, job.gate)
    review = loop.registry.get(job.candidate_version).meta.review
    assert review is not None and review.trusted and review.reasons == ()
    assert loop.serving() == job.candidate_version


# ---- over gRPC: statuses, messages and scopes -------------------------------------------------


@pytest.fixture
def stub_for(make_loop: Any) -> Iterator[Callable[[Loop], AdaptationStub]]:
    event_loop = asyncio.new_event_loop()
    thread = threading.Thread(target=event_loop.run_forever, daemon=True)
    thread.start()
    servers: list[Any] = []
    channels: list[grpc.Channel] = []

    def start(loop: Loop) -> AdaptationStub:
        async def build() -> Any:
            server = build_server(
                InferenceService({}), Metrics(), "127.0.0.1", 0, adaptation=loop.service,
                tokens=TokenStore.load(None, TOKENS),
            )  # fmt: skip
            await server.server.start()
            return server

        server = asyncio.run_coroutine_threadsafe(build(), event_loop).result(10)
        servers.append(server)
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        channels.append(channel)
        return AdaptationStub(channel)

    yield start
    for channel in channels:
        channel.close()
    for server in servers:
        asyncio.run_coroutine_threadsafe(server.server.stop(0), event_loop).result(10)
    event_loop.call_soon_threadsafe(event_loop.stop)
    thread.join(5)


def bearer(name: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {name}-token-0123456789")]


def refused(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as error:
        call()
    return error.value.code(), error.value.details()


def test_approve_and_reject_errors_map_to_statuses(
    make_loop: Any, stub_for: Callable[[Loop], AdaptationStub]
) -> None:
    loop: Loop = make_loop()
    stub = stub_for(loop)
    version = pending_round(loop)
    ops = bearer("ops")
    for method in (stub.ApproveVersion, stub.RejectVersion):
        request_type = (
            pb.ApproveVersionRequest if method is stub.ApproveVersion else pb.RejectVersionRequest
        )
        assert refused(lambda: method(request_type(model=TINY_MODEL, version=version), metadata=bearer("labeler"))) == (  # noqa: B023
            grpc.StatusCode.PERMISSION_DENIED,
            "token 'labeler' (scopes: label) lacks the scope 'admin' needed for "
            f"/loopserve.v1.Adaptation/{'ApproveVersion' if method is stub.ApproveVersion else 'RejectVersion'}",
        )  # fmt: skip
        assert refused(lambda: method(request_type(model=TINY_MODEL, version=9), metadata=ops)) == (  # noqa: B023
            grpc.StatusCode.NOT_FOUND, f"model {TINY_MODEL!r} has no version 9",
        )  # fmt: skip
        assert refused(lambda: method(request_type(model=TINY_MODEL, version=1), metadata=ops)) == (  # noqa: B023
            grpc.StatusCode.INVALID_ARGUMENT,
            f"version 1 of {TINY_MODEL!r} does not wait for review (status 'serving')",
        )  # fmt: skip
    # The version it was trained from no longer serves: approving it would undo that change.
    asyncio.run(loop.service.rollback(TINY_MODEL, 2))
    request = pb.ApproveVersionRequest(model=TINY_MODEL, version=version)
    assert refused(lambda: stub.ApproveVersion(request, metadata=ops)) == (
        grpc.StatusCode.ABORTED,
        f"version {version} of {TINY_MODEL!r} was trained from version 1, but version 2 serves "
        "now; reject it (the next round trains from the serving version)",
    )
    assert loop.serving() == 2
    rejected = stub.RejectVersion(
        pb.RejectVersionRequest(model=TINY_MODEL, version=version), metadata=ops
    )
    assert rejected.status == "rejected"
    assert rejected.review.trigger == "courier" and rejected.review.reasons
