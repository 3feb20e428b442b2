"""An incremental fine-tune job, run in its own process.

The parent (``service.adaptation.jobs``) writes a :class:`FineTuneSpec` as JSON and starts
:func:`run_job` in a spawned, niced process with few torch threads, so serving keeps its cores.
The model's task trains the candidate (``TaskTraining.train_candidate``, see ``_contract``): it
continues from the serving version's weights, grows the head for new labels (old rows kept, new
rows initialised from class-mean embeddings), fine-tunes on new samples mixed with replayed older
ones, exports ONNX and checks parity. The job then, the same for every task, keeps the int8 graph
when it holds up on held-out rows (``_int8``), scores candidate and serving version for the gate
and writes ``result.json``. It never publishes anything itself: the parent decides from the
result.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import signal
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from service.calibration import Calibration, FloatArray, calibrate
from service.domain.finetune import FineTuneResult, FineTuneSpec
from service.domain.gate import decide, paired_margin
from service.domain.loop import JOB_PARENT_PID_ENV
from service.domain.review import ReviewEvidence
from service.domain.versions import DataCounts
from service.errors import is_disk_full
from service.priority import lower_priority
from service.runtime import LoadedVersion
from service.training._candidate import (
    Candidate,
    Items,
    Pairs,
    correct_given,
    mean_correct,
    predict_items,
    same_items,
)
from service.training._contract import task_training
from service.training._evidence import Predictions, other_sources, review_evidence
from service.training._int8 import HeldOut, ServedGraph, choose_graph

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def run_job(spec_path: str) -> None:
    """Process entry point: never raises; the outcome is in ``result.json`` and the exit code."""
    _die_with_parent()
    spec = FineTuneSpec.load(Path(spec_path))
    result_path = Path(spec.result_path)
    try:
        idle = lower_priority(spec.nice, spec.idle_priority)
        _log(f"priority: nice {spec.nice}" + (", SCHED_IDLE" if idle else ""))
        torch.set_num_threads(spec.threads)
        result = _fine_tune(spec)
    except BaseException as exc:
        failed = FineTuneResult.failed(
            f"{type(exc).__name__}: {exc}", traceback.format_exc(), disk_full=is_disk_full(exc)
        )
        failed.save(result_path)
        raise SystemExit(1) from None
    result.save(result_path)


def _die_with_parent() -> None:
    """Be killed when the server that started this job dies, even by SIGKILL: the job runs in
    its own session, so nothing else would end it, and a job nobody waits for only burns CPU and
    holds its staging directory. The server passes its pid; if it has already died before the
    request took effect, this process has been reparented and ends at once."""
    parent = os.environ.get(JOB_PARENT_PID_ENV)
    if parent is None or not sys.platform.startswith("linux"):
        return  # started by hand, or no prctl: the server's restart ends a leftover job
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        _log(f"warning: prctl(PR_SET_PDEATHSIG) failed: {os.strerror(ctypes.get_errno())}")
        return
    if os.getppid() != int(parent):
        raise SystemExit(1)


def _log(message: str) -> None:
    """One line of job.log: the job's phases with their times, so a slow job can be explained."""
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def _fine_tune(spec: FineTuneSpec) -> FineTuneResult:
    # Imported before the clock starts: the job's seconds count its work, not the import of the
    # task's training libraries.
    training = task_training(spec.task)
    started = time.perf_counter()
    _log(
        f"job: {len(spec.train)} train, {len(spec.validation)} validation, {len(spec.holdout)} "
        f"holdout, {len(spec.anchor)} anchor rows; {spec.threads} thread(s)"
    )
    trained = training.train_candidate(spec, _log)
    _log(
        f"exported and checked ONNX (parity {trained.parity:.1e}) at "
        f"{time.perf_counter() - started:.1f}s"
    )
    graph = _served_graph(spec, trained)
    return _judge(spec, dataclasses.replace(trained, candidate=graph.session), graph, started)


def _served_graph(spec: FineTuneSpec, trained: Candidate) -> ServedGraph:
    """The graph the candidate would serve: int8 when it holds up on the rows the candidate
    never trained on (the gate's holdout and anchor), as for a first version."""
    rows = spec.holdout + spec.anchor

    def accuracy(session: LoadedVersion) -> float:
        return mean_correct(_correct(trained, session, rows))

    return choose_graph(
        trained.candidate,
        Path(spec.staging_dir),
        trained.quantize if spec.int8 else None,
        HeldOut(len(rows), "holdout+anchor", accuracy),
        spec.int8_max_accuracy_drop,
        _log,
    )


def _judge(
    spec: FineTuneSpec, trained: Candidate, graph: ServedGraph, started: float
) -> FineTuneResult:
    """The gate, the review and the calibration of a trained candidate (``trained.candidate``:
    the graph it would serve): the same for every task."""
    candidate, incumbent = trained.candidate, trained.incumbent
    thresholds = spec.gate
    holdout_probabilities = _predict(trained, candidate, spec.holdout)
    candidate_new, incumbent_new = (
        correct_given(candidate.labels, spec.holdout, holdout_probabilities),
        _correct(trained, incumbent, spec.holdout),
    )
    candidate_old, incumbent_old = (
        _correct(trained, candidate, spec.anchor),
        _correct(trained, incumbent, spec.anchor),
    )
    gate = decide(
        candidate_new=mean_correct(candidate_new),
        incumbent_new=mean_correct(incumbent_new),
        candidate_anchor=mean_correct(candidate_old),
        incumbent_anchor=mean_correct(incumbent_old),
        new_examples=len(spec.holdout),
        anchor_examples=len(spec.anchor),
        thresholds=thresholds,
        new_margin=paired_margin(candidate_new, incumbent_new, thresholds.confidence_z),
        anchor_margin=paired_margin(candidate_old, incumbent_old, thresholds.confidence_z),
        anchor_held_out=spec.anchor_held_out,
    )
    _log(f"gate at {time.perf_counter() - started:.1f}s: {gate.reason}")
    review = None
    if gate.promote:
        holdout = other_sources(
            spec.round_samples, spec.holdout, candidate_new, incumbent_new, thresholds.confidence_z
        )
        review = _review(spec, trained, holdout)
    if review is not None:
        _log(
            f"review at {time.perf_counter() - started:.1f}s: confident disagreement "
            f"{review.confident_disagreement:.3f}, flip rate {review.flip_rate:.3f} on "
            f"{review.traffic} inputs; "
            # The reasons quote tokens of the samples (a trigger): they go to meta.json, whose
            # review a purge scrubs, not to this log, which keeps no sample text.
            + (
                f"{len(review.reasons)} reason(s) to wait for review"
                if review.reasons
                else "nothing suspicious"
            )
        )
    calibration = _calibration(spec, trained.candidate, holdout_probabilities, trained.items)
    _log(
        f"calibration: temperature {calibration.temperature} fitted on {calibration.rows} "
        f"{calibration.source} rows"
    )
    return FineTuneResult(
        ok=True,
        gate=gate,
        serving_file=graph.file,
        labels=spec.labels,
        train=trained.report.record(),
        parity_max_abs_diff=trained.parity,
        int8=graph.int8,
        calibration=calibration,
        data=DataCounts(
            train=len(spec.train),
            validation=len(spec.validation),
            holdout=len(spec.holdout),
            anchor=len(spec.anchor),
        ),
        seconds=round(time.perf_counter() - started, 2),
        review=review,
    )


def _review(spec: FineTuneSpec, trained: Candidate, holdout: dict[str, float]) -> ReviewEvidence:
    """The review evidence (see ``_evidence``): the serving version on the round's samples,
    both versions on recent traffic, the anchor as inputs the round's sources did not post.
    Where inputs are not words, the serving version's embeddings of samples, anchor and traffic
    too, for the embedding-cluster test."""
    incumbent, candidate = trained.incumbent, trained.candidate
    texts = [text for text, _, _ in spec.round_samples]
    anchor = [text for text, _ in spec.anchor]
    on_samples = trained.score(incumbent, texts)
    on_traffic = trained.score(incumbent, spec.traffic)
    reference = (
        None
        if trained.words
        else np.concatenate([trained.score(incumbent, anchor).embedding, on_traffic.embedding])
    )
    return review_evidence(
        spec.round_samples,
        Predictions(incumbent.labels, on_samples.probabilities, on_samples.embedding),
        spec.traffic,
        Predictions(incumbent.labels, on_traffic.probabilities),
        Predictions(candidate.labels, trained.predict(candidate, spec.traffic)),
        anchor,
        spec.trusted,
        spec.gate,
        holdout,
        tokens=trained.words,
        reference_embeddings=reference,
    )


def _calibration(
    spec: FineTuneSpec,
    candidate: LoadedVersion,
    holdout_probabilities: FloatArray,
    items: Items = same_items,
) -> Calibration:
    """Fitted on the gate's holdout, which the candidate never trained on; without one, on the
    validation rows, which only chose its epoch."""
    if spec.holdout:
        pairs, probabilities, source = spec.holdout, holdout_probabilities, "holdout"
    else:
        pairs, source = spec.validation, "validation" if spec.validation else "none"
        probabilities = predict_items(candidate, [text for text, _ in pairs], items)
    index = {label: i for i, label in enumerate(candidate.labels)}
    labels = np.array([index[gold] for _, gold in pairs], dtype=np.int64)
    return calibrate(probabilities, labels, source)


def _predict(trained: Candidate, session: LoadedVersion, pairs: Pairs) -> FloatArray:
    return trained.predict(session, [text for text, _ in pairs])


def _correct(trained: Candidate, session: LoadedVersion, pairs: Pairs) -> list[bool]:
    return correct_given(session.labels, pairs, _predict(trained, session, pairs))
