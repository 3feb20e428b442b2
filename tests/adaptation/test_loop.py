"""The closed loop on the tiny backbone: trigger, fine-tune process, gate, promotion, rollback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    ADAPTATION,
    TINY_LABELS,
    TINY_MODEL,
    shifted,
    write_tiny_definition,
)
from waiting import wait_until

from service.adaptation.events import EventBus
from service.adaptation.loop import AdaptationService
from service.adaptation.predictions import PredictionLog
from service.config import load_model_definition
from service.domain.loop import JobState, NewSample
from service.errors import InvalidInput, NotFound
from service.metrics import Metrics
from service.registry import ModelRegistry
from service.security import ANONYMOUS
from service.serving import ServedModel
from service.store import SQLiteStore
from service.types import InferenceRequest, Tensor

pytestmark = pytest.mark.slow

FAREWELL = {"bye": "farewell"}


class Loop:
    def __init__(self, models_dir: Path, state_dir: Path) -> None:
        self.metrics = Metrics()
        self.predictions = PredictionLog()
        definition = load_model_definition(models_dir, TINY_MODEL)
        self.registry = ModelRegistry(state_dir, TINY_MODEL)
        self.served = ServedModel(
            definition, self.registry, self.metrics, on_predictions=self.predictions.record
        )
        self.served.start()
        self.store = SQLiteStore(state_dir / "loopserve.db")
        self.service = AdaptationService(
            {TINY_MODEL: self.served},
            self.store,
            self.store,
            EventBus(),
            self.predictions,
            self.metrics,
            state_dir / "jobs",
        )

    def post(self, rows: list[tuple[str, str]], **fields: str) -> None:
        samples = [NewSample(text, label, **fields) for text, label in rows]
        asyncio.run(self.service.add_samples(TINY_MODEL, samples, caller=ANONYMOUS))

    def accuracy(self, rows: list[tuple[str, str]]) -> float:
        loaded = self.served.serving_version
        assert loaded is not None
        predicted = loaded.predict([t for t, _ in rows]).probabilities.argmax(1)
        return float(
            np.mean(
                [loaded.labels[p] == gold for p, (_, gold) in zip(predicted, rows, strict=True)]
            )
        )

    def run_job(self, reason: str = "test") -> object:
        job = asyncio.run(self.service.start_fine_tune(TINY_MODEL, reason))
        self.service.wait_idle(180)
        return self.store.job(job.id)

    def close(self) -> None:
        self.service.stop()
        self.served.stop(5)
        self.store.close()


@pytest.fixture
def make_loop(tmp_path: Path, tiny_backbone: Path, state_dir: Path) -> Iterator[object]:
    loops: list[Loop] = []

    def make(
        min_new: int = 1000,
        lr: float = 3e-4,
        head_lr: float = 0.02,
        allow_new: bool = False,
        settle: float = 0.0,
    ) -> Loop:
        extra = ADAPTATION.format(
            min_new=min_new, lr=lr, head_lr=head_lr, allow_new=str(allow_new).lower(), settle=settle
        )
        write_tiny_definition(tmp_path / "models", tiny_backbone, extra_toml=extra)
        loop = Loop(tmp_path / "models", state_dir)
        loops.append(loop)
        return loop

    yield make
    for loop in loops:
        loop.close()


def test_enough_labels_trigger_a_fine_tune_that_learns_the_shift_and_promotes(
    make_loop: object,
) -> None:
    loop: Loop = make_loop(min_new=60)
    test_rows = shifted(60, seed=1)
    before = loop.accuracy(test_rows)
    loop.post(shifted(60, seed=0))
    loop.service.wait_idle(180)
    job = loop.store.latest(TINY_MODEL)
    assert job is not None and job.trigger == "samples"
    assert job.state is JobState.PROMOTED, job.error or job.gate
    assert loop.served.serving_version is not None and loop.served.serving_version.version == 3
    assert loop.registry.current().version == 3
    assert loop.accuracy(test_rows) >= before + 0.2  # from chance (1/3) towards the shift
    meta = loop.registry.get(3).meta
    assert meta.status == "promoted" and meta.parent == 1 and meta.samples_upto == 60
    assert meta.gate is not None and meta.gate.promote is True
    assert meta.gate.candidate_new >= meta.gate.incumbent_new
    calibration = meta.calibration
    assert calibration is not None and calibration.source == "holdout"
    assert calibration.rows == meta.data.holdout > 0
    assert 0.05 <= calibration.temperature <= 20
    assert calibration.accuracy == pytest.approx(meta.gate.candidate_new, abs=1e-4)
    assert loop.registry.verify(loop.registry.get(3))
    # int8 (on by default) is checked as for a first version, on rows the candidate never saw.
    int8 = meta.int8
    assert int8 is not None and int8.split == "holdout+anchor"
    assert int8.rows == meta.data.holdout + meta.data.anchor
    assert meta.serving_file == ("model.int8.onnx" if int8.accepted else "model.onnx")
    assert (
        loop.metrics.registry.get_sample_value(
            "loopserve_finetune_jobs_total", {"model": TINY_MODEL, "outcome": "promoted"}
        )
        == 1
    )
    status = asyncio.run(loop.service.model_status(TINY_MODEL))
    assert status.serving_version == 3 and status.samples_since_version == 0


def test_a_burst_of_labels_is_one_job_once_the_labels_settle(make_loop: object) -> None:
    loop: Loop = make_loop(min_new=30, settle=1.5)
    rows = shifted(90, seed=0)
    for start in range(0, 90, 30):  # three calls, as `loopserve label` sends a file
        loop.post(rows[start : start + 30])
        time.sleep(0.3)  # the burst's pace: each call well within the settling time of the last
    assert loop.store.latest(TINY_MODEL) is None  # due after the first call, but still settling
    wait_until(lambda: loop.store.latest(TINY_MODEL), 10, "a job once the labels settled")
    loop.service.wait_idle(180)
    jobs = loop.store.recent(TINY_MODEL)
    assert len(jobs) == 1, jobs
    assert jobs[0].trigger == "samples" and jobs[0].samples_upto == 90


def test_a_worse_candidate_is_rejected_and_never_serves(make_loop: object) -> None:
    loop: Loop = make_loop(lr=5.0, head_lr=50.0)
    loop.post(shifted(60, seed=0))
    job = loop.run_job()
    assert job.state is JobState.REJECTED, job.error
    assert job.gate is not None and not job.gate.promote
    assert loop.served.serving_version.version == 1
    assert loop.registry.current().version == 1
    rejected = loop.registry.get(job.candidate_version)
    assert rejected.meta.status == "rejected"
    with pytest.raises(InvalidInput, match="rejected by the gate"):
        asyncio.run(loop.service.rollback(TINY_MODEL, rejected.version))


def test_killing_the_job_process_fails_the_job_and_serving_goes_on(make_loop: object) -> None:
    loop: Loop = make_loop()
    loop.post(shifted(60, seed=0))
    job = asyncio.run(loop.service.start_fine_tune(TINY_MODEL, "to be killed"))
    runner = loop.service._runners[TINY_MODEL]
    process = wait_until(lambda: runner._process, 30, "the job's process")
    process.kill()
    loop.service.wait_idle(60)
    failed = loop.store.job(job.id)
    assert failed.state is JobState.FAILED
    assert "exited with code" in failed.error
    assert loop.registry.current().version == 1
    assert loop.accuracy([("hello hi the team", "greeting")]) == 1.0
    assert [v.version for v in loop.registry.versions()] == [1, 2]


def test_rollback_returns_to_an_earlier_version(make_loop: object) -> None:
    loop: Loop = make_loop()
    loop.post(shifted(60, seed=0))
    assert loop.run_job().state is JobState.PROMOTED
    summary = asyncio.run(loop.service.rollback(TINY_MODEL, 1))
    assert summary.status == "serving" and loop.served.serving_version.version == 1
    assert loop.registry.current().version == 1
    with pytest.raises(InvalidInput, match="already serving"):
        asyncio.run(loop.service.rollback(TINY_MODEL, 1))
    with pytest.raises(NotFound, match="no version 9"):
        asyncio.run(loop.service.rollback(TINY_MODEL, 9))
    statuses = {v.version: v.status for v in asyncio.run(loop.service.list_versions(TINY_MODEL))}
    assert statuses == {1: "serving", 2: "retired", 3: "retired"}


def test_a_rollback_is_not_undone_by_training_the_same_labels_again(make_loop: object) -> None:
    loop: Loop = make_loop(min_new=60)
    loop.post(shifted(60, seed=0))
    loop.service.wait_idle(180)
    first = loop.store.latest(TINY_MODEL)
    assert first is not None and first.state is JobState.PROMOTED, first
    asyncio.run(loop.service.rollback(TINY_MODEL, 1))
    # Version 1's data predates all 60 labels, but the latest job trained on them: the poll a
    # trainer runs every few seconds starts nothing.
    loop.service.poll()
    assert loop.store.latest(TINY_MODEL) == first
    assert loop.served.serving_version is not None and loop.served.serving_version.version == 1
    loop.post(shifted(60, seed=2))  # fresh labels: a job, from the serving version 1
    loop.service.wait_idle(180)
    second = loop.store.latest(TINY_MODEL)
    assert second is not None and second.id != first.id
    assert second.trigger == "samples" and second.base_version == 1


def test_new_label_names_grow_the_head(make_loop: object) -> None:
    loop: Loop = make_loop(allow_new=True)
    loop.post(shifted(30, seed=0, markers=FAREWELL) + shifted(30, seed=0))
    job = loop.run_job()
    assert job.state is JobState.PROMOTED, job.error or job.gate
    loaded = loop.served.serving_version
    assert loaded is not None and loaded.labels == [*TINY_LABELS, "farewell"]
    assert loop.accuracy(shifted(20, seed=5, markers=FAREWELL)) >= 0.8
    assert loop.accuracy([("hello hi the team", "greeting"), ("why is it late", "question")]) == 1.0


def test_unknown_labels_are_refused_unless_allowed(make_loop: object) -> None:
    loop: Loop = make_loop()
    with pytest.raises(InvalidInput, match=r"label 'farewell' is not one of the model's labels"):
        loop.post([("bye team", "farewell")])
    assert loop.store.count(TINY_MODEL) == 0


def test_delayed_labels_feed_online_accuracy(make_loop: object) -> None:
    loop: Loop = make_loop()
    request = InferenceRequest(
        TINY_MODEL, "", "req-1", [Tensor("text", "BYTES", (1,), [b"hello hi the team"])]
    )
    asyncio.run(loop.served.infer(request))
    record = loop.predictions.lookup("req-1")
    assert record is not None and record.version == 1
    loop.post([("hello hi the team", record.label)], prediction_id="req-1")
    value = loop.metrics.registry.get_sample_value
    assert value("loopserve_online_accuracy", {"model": TINY_MODEL, "version": "1"}) == 1.0
    assert (
        value("loopserve_online_labeled_predictions_total", {"model": TINY_MODEL, "version": "1"})
        == 1.0
    )


def test_online_accuracy_counts_right_and_wrong_labels_per_version(make_loop: object) -> None:
    loop: Loop = make_loop()
    for i in range(2):
        text = [b"hello hi the team"]
        request = InferenceRequest(TINY_MODEL, "", f"q{i}", [Tensor("text", "BYTES", (1,), text)])
        asyncio.run(loop.served.infer(request))
    predicted = loop.predictions.lookup("q0").label
    wrong = next(label for label in TINY_LABELS if label != predicted)
    loop.post([("hello hi the team", predicted)], prediction_id="q0")
    loop.post([("hello hi team", wrong)], prediction_id="q1")
    value = loop.metrics.registry.get_sample_value
    assert value("loopserve_online_accuracy", {"model": TINY_MODEL, "version": "1"}) == 0.5
    assert (
        value("loopserve_online_correct_predictions_total", {"model": TINY_MODEL, "version": "1"})
        == 1.0
    )
