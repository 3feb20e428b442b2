"""Pure parts of the loop: trigger policy, gate rule, data selection, event bus,
the limits of one AddSamples call."""

from __future__ import annotations

import asyncio
import dataclasses
import math

import pytest

from service.adaptation import _data
from service.adaptation._validation import validate_samples
from service.adaptation.events import EventBus
from service.adaptation.policy import PolicyInput, TriggerPolicy
from service.config import AdaptationRecipe, GateThresholds
from service.domain.gate import decide, paired_margin
from service.domain.loop import MAX_CONTENT_BYTES_PER_CALL, EventKind, Job, JobState, NewSample
from service.errors import InvalidInput
from service.registry import ModelRegistry

RECIPE = AdaptationRecipe(
    min_new_samples=10, drift_min_samples=4, backoff_seconds=100, max_retries=1
)


def job(state: JobState, finished: float | None = 1000.0, attempt: int = 1) -> Job:
    return Job(
        "job-1", "m", state, "samples", "", 1, 50, 900.0, 950.0, finished, None, None, "", attempt
    )


def state(**overrides: object) -> PolicyInput:
    values: dict[str, object] = {
        "samples_since_last_job": 0,
        "samples_since_alarm": 0,
        "drift_alarm": False,
        "latest_job": None,
        "now": 1050.0,
    }
    values.update(overrides)
    return PolicyInput(**values)


@pytest.mark.parametrize(
    ("situation", "expected"),
    [
        (state(samples_since_last_job=9), None),
        (state(samples_since_last_job=10), "samples"),
        (state(samples_since_last_job=50, latest_job=job(JobState.RUNNING, finished=None)), None),
        (state(drift_alarm=True, samples_since_alarm=3), None),
        (state(drift_alarm=True, samples_since_alarm=4), "drift"),
        (state(latest_job=job(JobState.FAILED, attempt=1)), "retry"),
        (
            state(samples_since_last_job=50, latest_job=job(JobState.FAILED, attempt=2)),
            None,
        ),  # backing off
        (
            state(
                samples_since_last_job=50,
                latest_job=job(JobState.REJECTED),
            ),
            None,
        ),
        (
            state(
                samples_since_last_job=9,
                latest_job=job(JobState.REJECTED),
                now=2000.0,
            ),
            None,
        ),
        (
            state(
                samples_since_last_job=10,
                latest_job=job(JobState.REJECTED),
                now=2000.0,
            ),
            "samples",
        ),
        (state(samples_since_last_job=10, latest_job=job(JobState.PROMOTED)), "samples"),
        # After a rollback the serving version's data is older than the latest job's: only
        # labels beyond the job's count, or the loop would build the rolled-back version again.
        (state(samples_since_last_job=9, latest_job=job(JobState.PROMOTED)), None),
    ],
)
def test_trigger_policy(situation: PolicyInput, expected: str | None) -> None:
    assert TriggerPolicy(RECIPE).decide(situation) == expected


@pytest.mark.parametrize(
    ("trigger", "quiet_for", "due_for", "delay"),
    [
        ("samples", 0.5, 0.5, 1.5),  # labels still arriving: wait for 2 s of quiet
        ("drift", 1.0, 10.0, 1.0),
        ("samples", 2.5, 0.0, 0.0),  # quiet long enough
        ("samples", 0.0, 29.0, 1.0),  # a steady stream: capped at 30 s after the job was due
        ("samples", 0.0, 31.0, 0.0),
        ("retry", 0.0, 0.0, 0.0),  # not triggered by labels: never held back
    ],
)
def test_a_due_job_settles_until_labels_go_quiet(
    trigger: str, quiet_for: float, due_for: float, delay: float
) -> None:
    recipe = dataclasses.replace(RECIPE, settle_seconds=2.0, max_settle_seconds=30.0)
    assert TriggerPolicy(recipe).settle_delay(trigger, quiet_for, due_for) == pytest.approx(delay)


def test_backoff_until_after_a_rejection_only() -> None:
    policy = TriggerPolicy(RECIPE)
    assert policy.backoff_until(job(JobState.REJECTED)) == 1100.0
    assert policy.backoff_until(job(JobState.PROMOTED)) is None
    assert policy.backoff_until(None) is None


@pytest.mark.parametrize(
    ("scores", "promote", "reason"),
    [
        ((0.90, 0.50, 0.95, 0.955), True, "new data 0.900 vs 0.500"),
        ((0.48, 0.50, 0.95, 0.95), True, "new data"),  # within the 0.02 tolerance
        ((0.47, 0.50, 0.95, 0.95), False, "worse on new data"),
        ((0.90, 0.50, 0.93, 0.95), False, "forgets old data: anchor 0.930 vs 0.950"),
    ],
)
def test_gate_rule(scores: tuple[float, float, float, float], promote: bool, reason: str) -> None:
    cn, inn, ca, ia = scores
    result = decide(
        candidate_new=cn, incumbent_new=inn, candidate_anchor=ca, incumbent_anchor=ia,
        new_examples=10, anchor_examples=10, thresholds=GateThresholds(0.02, 0.01),
    )  # fmt: skip
    assert result.promote is promote
    assert reason in result.reason
    assert result.forgetting == pytest.approx(ia - ca)


def test_job_data_keeps_holdout_and_anchor_out_of_training() -> None:
    new = [(f"new {i}", "a" if i % 2 else "b") for i in range(40)] + [("brand new", "c")]
    old = [(f"old {i}", "a" if i % 2 else "b") for i in range(100)]
    data = _data.select(
        new, old, ["a", "b"], dataclasses.replace(RECIPE, anchor_size=30, replay_ratio=0.5), seed=1
    )
    trained = set(data.train) | set(data.validation)
    assert not trained & set(data.holdout) and not trained & set(data.anchor)
    assert len(data.holdout) == 8 and len(data.anchor) == 30
    assert ("brand new", "c") in trained  # a single example of a label is never held out
    replayed = [pair for pair in trained if pair[0].startswith("old")]
    assert len(replayed) == round(0.5 * 33)
    assert data.new_labels == ["c"]


def test_event_bus_filters_by_model_and_drops_the_oldest_for_slow_readers() -> None:
    bus = EventBus()

    async def run() -> list[str]:
        stream = bus.subscribe("m")
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0)  # one turn: the reader waits before anything is published
        bus.publish(EventKind.SWAP, "other", "ignored")
        bus.publish(EventKind.SWAP, "m", "seen", version=2)
        event = await asyncio.wait_for(first, 5)
        await stream.aclose()
        return [event.message, event.attributes["version"]]

    assert asyncio.run(run()) == ["seen", "2"]
    assert bus.subscriber_count == 0


def test_gate_without_a_holdout_judges_on_the_anchor_only() -> None:
    nan = float("nan")
    kept = decide(
        candidate_new=nan, incumbent_new=nan, candidate_anchor=0.95, incumbent_anchor=0.95,
        new_examples=0, anchor_examples=10, thresholds=GateThresholds(0.02, 0.01),
    )  # fmt: skip
    assert kept.promote and kept.reason.startswith("no new-data holdout")
    forgot = decide(
        candidate_new=nan, incumbent_new=nan, candidate_anchor=0.80, incumbent_anchor=0.95,
        new_examples=0, anchor_examples=10, thresholds=GateThresholds(0.02, 0.01),
    )  # fmt: skip
    assert not forgot.promote and "forgets old data" in forgot.reason


def test_few_new_samples_still_leave_one_for_the_gate() -> None:
    new = [("a one", "a"), ("b one", "b"), ("c one", "c")]  # one per label: none held out per label
    old = [(f"old {i}", "a") for i in range(20)]
    data = _data.select(new, old, ["a", "b", "c"], RECIPE, seed=0)
    assert len(data.holdout) == 1
    assert not set(data.holdout) & (set(data.train) | set(data.validation))
    assert len(_data.select(new[:1], old, ["a"], RECIPE, seed=0).holdout) == 0


def test_the_evaluation_reserve_is_a_stable_share_of_samples() -> None:
    texts = [f"sample {i}" for i in range(5000)]
    chosen = [t for t in texts if _data.reserved(t, "a", 0.2)]
    assert 0.18 < len(chosen) / len(texts) < 0.22
    assert chosen == [t for t in texts if _data.reserved(t, "a", 0.2)]  # no seed, no state
    assert not any(_data.reserved(t, "a", 0.0) for t in texts)


def test_reserved_samples_are_the_gate_data_and_never_trained_on() -> None:
    new = [(f"new {i}", "a" if i % 2 else "b") for i in range(40)]
    old = [(f"old {i}", "a" if i % 2 else "b") for i in range(100)]
    reserved_new = [(f"rnew {i}", "a") for i in range(5)]
    reserved_old = [(f"rold {i}", "b") for i in range(_data.MIN_HELD_OUT_ANCHOR)]
    data = _data.select(new, old, ["a", "b"], RECIPE, 0, reserved_new, reserved_old)
    trained = set(data.train) | set(data.validation)
    assert data.holdout == reserved_new and sorted(data.anchor) == sorted(reserved_old)
    assert data.anchor_held_out
    assert not trained & (set(reserved_new) | set(reserved_old))
    assert set(new) <= trained
    few = _data.select(new, old, ["a", "b"], RECIPE, 0, reserved_new, reserved_old[:5])
    assert not few.anchor_held_out and all(pair[0].startswith("old") for pair in few.anchor)
    assert not set(reserved_old[:5]) & (set(few.train) | set(few.validation))


def test_paired_margin_counts_only_disagreements() -> None:
    same = [True] * 90 + [False] * 10
    assert paired_margin(same, same, 1.64) == 0.0
    candidate = [False] * 4 + [True] * 96  # 4 rows lost, 1 gained: 3 points of forgetting
    incumbent = [True] * 4 + [False] + [True] * 95
    assert paired_margin(candidate, incumbent, 1.64) == pytest.approx(1.64 * math.sqrt(5) / 100)
    assert paired_margin([], [], 1.64) == 0.0


def test_a_drop_within_the_noise_margin_does_not_block_promotion() -> None:
    scores = dict(
        candidate_new=0.9, incumbent_new=0.8, candidate_anchor=0.93, incumbent_anchor=0.95
    )
    common = dict(new_examples=100, anchor_examples=100)
    strict = decide(**scores, **common, thresholds=GateThresholds(0.02, 0.01, 0.0))
    assert not strict.promote and "noise margin 0.000" in strict.reason
    noisy = decide(
        **scores,
        **common,
        thresholds=GateThresholds(0.02, 0.01),
        anchor_margin=0.015,
    )
    assert noisy.promote and noisy.anchor_margin == 0.015
    clear = decide(
        **scores,
        **common,
        thresholds=GateThresholds(0.02, 0.01),
        anchor_margin=0.005,
    )
    assert not clear.promote and "noise margin 0.005" in clear.reason


def test_gate_refuses_to_promote_without_an_anchor_of_older_data() -> None:
    nan = float("nan")
    result = decide(
        candidate_new=0.99, incumbent_new=0.40, candidate_anchor=nan, incumbent_anchor=nan,
        new_examples=200, anchor_examples=0, thresholds=GateThresholds(0.02, 0.01),
    )  # fmt: skip
    assert not result.promote
    assert result.reason == (
        "no anchor of older data to measure forgetting on; nothing is promoted without one"
    )


def test_a_call_over_the_content_limit_is_refused_before_any_sample_is_decoded() -> None:
    decoded: list[int] = []

    class Counting:
        def validate_sample(self, index: int, sample: NewSample) -> None:
            decoded.append(index)

    half = MAX_CONTENT_BYTES_PER_CALL // 2
    samples = [NewSample("", "a", data=bytes(half)), NewSample("", "a", data=bytes(half + 1))]
    with pytest.raises(InvalidInput) as caught:
        validate_samples(samples, inputs=Counting(), labels={"a"}, allow_new_labels=False)
    assert str(caught.value) == (
        f"the samples of one call carry {MAX_CONTENT_BYTES_PER_CALL + 1} bytes of content; "
        f"at most {MAX_CONTENT_BYTES_PER_CALL}: send fewer per call"
    )
    assert decoded == []
    validate_samples(samples[:1], inputs=Counting(), labels={"a"}, allow_new_labels=False)
    assert decoded == [0]


def test_a_listed_version_names_the_graph_it_serves_and_its_int8_check(
    registry: ModelRegistry,
) -> None:
    from service.adaptation.loop import _summary

    info = registry.get(1)
    summary = _summary(info, serving=1)
    assert summary.serving_file == info.meta.serving_file == "model.int8.onnx"
    assert summary.int8 is not None and summary.int8 == info.meta.int8
