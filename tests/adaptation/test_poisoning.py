"""A flood of junk labels from one token cannot retrain the model, and is traced to its source.

The scenario found by a hostile test: a drift alarm is raised, then one labeler posts 1,000
copies of one phrase labelled ``a`` plus texts made of control characters. On a server set never
to trigger on label count, the drift trigger started a fine-tune on them and the gate, drawing
its holdout from the same junk, promoted it. Here the real AdaptationService runs behind the real
gRPC server with tokens; only the job's work is faked (see test_job_races).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import test_job_races
from test_job_races import MODEL, GatedJobs, Loop
from waiting import wait_until

from service.adaptation._data import curate, source_cap
from service.api._proto.loopserve.v1 import adaptation_pb2 as pb
from service.api._proto.loopserve.v1.adaptation_pb2_grpc import AdaptationStub
from service.api.server import build_server
from service.config import AdaptationRecipe
from service.domain.loop import Sample
from service.inference import InferenceService
from service.metrics import Metrics
from service.security import TokenStore

gated = test_job_races.gated  # the fake job runner fixture, shared with the race tests
TOKENS = "junk:label:junk-token-0123456789\nteam:label:team-token-0123456789"
DRIFT_MIN = 50


@pytest.fixture
def loop(tmp_path: Path, gated: GatedJobs) -> Iterator[Loop]:
    # Never triggered by label count; a drift alarm triggers once DRIFT_MIN labels follow.
    recipe = AdaptationRecipe(
        min_new_samples=1_000_000, drift_min_samples=DRIFT_MIN, settle_seconds=0.0
    )
    running = Loop(tmp_path, recipe)
    yield running
    for k in range(10):
        gated.gate(k).set()
    running.service.stop(5)
    running.store.close()


@pytest.fixture
def stub(loop: Loop) -> Iterator[AdaptationStub]:
    event_loop = asyncio.new_event_loop()
    tokens = TokenStore.load(None, TOKENS)

    async def start() -> Any:
        server = build_server(
            InferenceService({}), Metrics(), "127.0.0.1", 0, adaptation=loop.service, tokens=tokens
        )
        await server.server.start()
        return server

    import threading

    thread = threading.Thread(target=event_loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(start(), event_loop).result(10)
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield AdaptationStub(channel)
    asyncio.run_coroutine_threadsafe(server.server.stop(0), event_loop).result(10)
    event_loop.call_soon_threadsafe(event_loop.stop)
    thread.join(5)


def post(stub: AdaptationStub, token: str, samples: list[tuple[str, str]]) -> pb.AddSamplesResponse:
    request = pb.AddSamplesRequest(
        model=MODEL, samples=[pb.Sample(text=t, label=label) for t, label in samples]
    )
    response: pb.AddSamplesResponse = stub.AddSamples(
        request, metadata=[("authorization", f"Bearer {token}")], timeout=10
    )
    return response


def test_a_junk_flood_after_a_drift_alarm_never_trains_a_version(
    loop: Loop, stub: AdaptationStub, gated: GatedJobs
) -> None:
    loop.service.raise_drift_alarm(MODEL)
    junk = "junk-token-0123456789"
    for _ in range(2):  # 1,000 copies of one phrase, with distinct ids
        response = post(stub, junk, [("refund me now", "a")] * 500)
        assert response.accepted == 500
    with pytest.raises(grpc.RpcError) as error:
        post(stub, junk, [("\x07\x08\x1b[2J", "a")])
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details() == (
        "sample[0] text contains the control character U+0007; send plain text (tabs and line "
        "breaks are fine)"
    )
    assert loop.jobs() == []  # 1,000 copies are one distinct text: far below DRIFT_MIN
    stored = loop.store.samples(MODEL)
    assert len(stored) == 1000 and {s.source for s in stored} == {"junk"}
    # In a job the flood counts once too.
    team = [(f"a real question number {i}", "b") for i in range(DRIFT_MIN)]
    post(stub, "team-token-0123456789", team)
    jobs = wait_until(loop.jobs, 5, "the team's labels to trigger the drift job")
    # The one job is the team's: the flood alone started none, not even later.
    assert [job.samples_upto for job in jobs] == [1000 + DRIFT_MIN]
    recipe = AdaptationRecipe()
    job_data = curate(loop.store.samples(MODEL), recipe.max_source_share, 0, recipe.flood_copies)
    by_source = {s: sum(1 for x in job_data if x.source == s) for s in ("junk", "team")}
    assert by_source == {"junk": 0, "team": DRIFT_MIN}  # a flood is left out of jobs entirely
    summary = {s.source: s.samples for s in loop.store.sources(MODEL)}
    assert summary == {"junk": 1000, "team": DRIFT_MIN}
    removed, first, last = loop.store.purge(MODEL, "junk")
    assert (removed, last - first + 1) == (1000, 1000)
    assert {s.source for s in loop.store.samples(MODEL)} == {"team"}


def sample(seq: int, text: str, source: str) -> Sample:
    return Sample(MODEL, f"id-{seq}", text, "a", "", 0.0, seq, source)


def test_curate_leaves_out_floods_of_one_text() -> None:
    samples = [sample(i, f"Refund {' ' * (i % 3)} me", "junk") for i in range(5)]
    samples += [sample(10 + i, "four copies", "team") for i in range(4)]
    samples += [sample(20, "once", "team")]
    kept = curate(samples, max_source_share=1.0, seed=1, flood_copies=5)
    assert [s.seq for s in kept] == [10, 20]


def test_curate_keeps_the_first_copy_of_a_text_and_caps_a_dominant_source() -> None:
    samples = [sample(1, "Refund  me", "junk"), sample(2, "refund me", "team")]
    samples += [sample(10 + i, f"junk {i}", "junk") for i in range(300)]
    samples += [sample(400 + i, f"good {i}", "team") for i in range(100)]
    kept = curate(samples, max_source_share=0.5, seed=1)
    assert all(s.seq != 2 for s in kept)  # a copy of seq 1, but for case and white space
    counts = {src: sum(1 for s in kept if s.source == src) for src in ("junk", "team")}
    assert counts == {"junk": 100, "team": 100}
    assert [s.seq for s in kept] == sorted(s.seq for s in kept)
    assert curate(samples[:50], 0.5, seed=1) == samples[:1] + samples[2:50]  # one source: no cap


@pytest.mark.parametrize(
    ("counts", "share", "cap"),
    [([1000, 100], 0.5, 100), ([100, 100], 0.5, 100), ([5], 0.5, None), ([10, 10, 10], 1.0, None),
     ([900, 50, 50], 0.5, 100), ([90, 10, 10, 10, 10], 0.25, 13)],
)  # fmt: skip
def test_source_cap_keeps_every_source_within_its_share(
    counts: list[int], share: float, cap: int | None
) -> None:
    assert source_cap(counts, share) == cap
    if cap is not None:
        capped = [min(n, cap) for n in counts]
        assert max(capped) <= share * sum(capped) + 1e-9
