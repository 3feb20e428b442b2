"""An incremental fine-tune job, run in its own process.

The parent (``service.adaptation.jobs``) writes a :class:`FineTuneSpec` as JSON and starts
:func:`run_job` in a spawned, niced process with few torch threads, so serving keeps its cores.
The job continues from the serving version's weights, grows the head for new labels (old rows
kept, new rows initialised from class-mean embeddings), fine-tunes on new samples mixed with
replayed older ones, exports ONNX (and int8 when configured), checks parity, scores candidate and
serving version for the gate, and writes ``result.json``. It never publishes anything itself: the
parent decides from the result.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from service.calibration import Calibration, FloatArray, calibrate
from service.domain.finetune import FineTuneResult, FineTuneSpec
from service.domain.gate import decide, paired_margin
from service.domain.loop import JOB_PARENT_PID_ENV
from service.domain.review import ReviewEvidence
from service.domain.versions import DataCounts, Int8Check
from service.errors import is_disk_full
from service.priority import lower_priority
from service.runtime import LoadedVersion
from service.tasks.image import NAME as IMAGE_TASK
from service.training._candidate import (
    Candidate,
    Items,
    job_recipe,
    predict_items,
    same_items,
)
from service.training._data import Example, TokenBatcher
from service.training._evidence import Predictions, other_sources, review_evidence
from service.training._export import export_onnx, load_for_check, parity_check, quantize_int8
from service.training._model import TextClassifier, load_encoder, trainable_state
from service.training._trainer import Trainer
from service.training.vision import train_image_candidate

Pairs = list[tuple[str, str]]
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
    started = time.perf_counter()
    _log(
        f"job: {len(spec.train)} train, {len(spec.validation)} validation, {len(spec.holdout)} "
        f"holdout, {len(spec.anchor)} anchor rows; {spec.threads} thread(s)"
    )
    image = spec.task == IMAGE_TASK
    trained = train_image_candidate(spec, _log) if image else _train_text(spec, started)
    _log(
        f"exported and checked ONNX (parity {trained.parity:.1e}) at "
        f"{time.perf_counter() - started:.1f}s"
    )
    return _judge(spec, trained, started)


def _train_text(spec: FineTuneSpec, started: float) -> Candidate:
    staging = Path(spec.staging_dir)
    tokenizer_path = staging / "tokenizer.json"
    tokenizer_path.write_bytes((Path(spec.base_dir) / "tokenizer.json").read_bytes())
    tokens = TokenBatcher(tokenizer_path, spec.max_seq_length)
    model = _load_base(spec)
    index = {label: i for i, label in enumerate(spec.labels)}
    if len(spec.labels) > len(spec.base_labels):
        _grow_head(model, tokens, spec, index)

    recipe = job_recipe(spec)

    def examples(pairs: Pairs) -> list[Example]:
        return [Example(text, index[label]) for text, label in pairs]

    _log(f"loaded base version in {time.perf_counter() - started:.1f}s")
    report = Trainer(model, tokens, recipe, progress=_log).fine_tune(
        examples(spec.train), examples(spec.validation)
    )
    _log(f"trained in {time.perf_counter() - started:.1f}s (cumulative)")
    save_file(trainable_state(model, spec.trainable_layers), str(staging / "weights.safetensors"))
    onnx_path = staging / "model.onnx"
    export_onnx(model, tokens, onnx_path)
    candidate = load_for_check(
        onnx_path, tokenizer_path, spec.labels, spec.max_seq_length, spec.threads
    )
    check_texts = [text for text, _ in (spec.holdout or spec.train)[:32]]
    parity = parity_check(model, tokens, candidate, check_texts)
    serving_file = "model.onnx"
    int8_info: Int8Check | None = None
    if spec.int8:
        candidate, serving_file, int8_info = _maybe_int8(spec, candidate, tokenizer_path)
    incumbent = load_for_check(
        Path(spec.base_dir) / spec.base_serving_file,
        Path(spec.base_dir) / "tokenizer.json",
        spec.base_labels,
        spec.max_seq_length,
        spec.threads,
    )
    return Candidate(
        candidate, incumbent, report, parity, serving_file, int8_info, items=same_items
    )


def _judge(spec: FineTuneSpec, trained: Candidate, started: float) -> FineTuneResult:
    """The gate, the review and the calibration of a trained candidate: the same for every
    task."""
    candidate, incumbent = trained.candidate, trained.incumbent
    thresholds = spec.gate
    holdout_probabilities = _predict(trained, candidate, spec.holdout)
    candidate_new, incumbent_new = (
        _correct_given(candidate.labels, spec.holdout, holdout_probabilities),
        _correct(trained, incumbent, spec.holdout),
    )
    candidate_old, incumbent_old = (
        _correct(trained, candidate, spec.anchor),
        _correct(trained, incumbent, spec.anchor),
    )
    gate = decide(
        candidate_new=_mean(candidate_new),
        incumbent_new=_mean(incumbent_new),
        candidate_anchor=_mean(candidate_old),
        incumbent_anchor=_mean(incumbent_old),
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
        serving_file=trained.serving_file,
        labels=spec.labels,
        train=trained.report.record(),
        parity_max_abs_diff=trained.parity,
        int8=trained.int8,
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
    both versions on recent traffic, the anchor as inputs the round's sources did not post."""
    incumbent, candidate = trained.incumbent, trained.candidate
    texts = [text for text, _, _ in spec.round_samples]
    return review_evidence(
        spec.round_samples,
        Predictions(incumbent.labels, trained.predict(incumbent, texts)),
        spec.traffic,
        Predictions(incumbent.labels, trained.predict(incumbent, spec.traffic)),
        Predictions(candidate.labels, trained.predict(candidate, spec.traffic)),
        [text for text, _ in spec.anchor],
        spec.trusted,
        spec.gate,
        holdout,
        tokens=trained.text_inputs,
    )


def _load_base(spec: FineTuneSpec) -> TextClassifier:
    model = TextClassifier(load_encoder(Path(spec.backbone)), len(spec.base_labels), spec.pooling)
    weights = load_file(str(Path(spec.base_dir) / "weights.safetensors"))
    missing_head = {"head.weight", "head.bias"} - set(weights)
    if missing_head:
        raise ValueError(f"base version {spec.base_version} weights lack {sorted(missing_head)}")
    unexpected = model.load_state_dict(weights, strict=False).unexpected_keys
    if unexpected:
        raise ValueError(
            f"base version {spec.base_version} weights do not fit the backbone: {unexpected[:3]}"
        )
    return model.eval()


@torch.no_grad()
def _grow_head(
    model: TextClassifier, tokens: TokenBatcher, spec: FineTuneSpec, index: dict[str, int]
) -> None:
    """Class-incremental: keep the old rows; start each new class along what separates its
    examples from the old classes' (its mean embedding minus theirs), at the old rows' norm and
    the lowest old bias, so it does not capture old inputs before training."""
    old = model.head
    head = torch.nn.Linear(old.in_features, len(spec.labels))
    head.weight[: old.out_features] = old.weight
    head.bias[: old.out_features] = old.bias
    scale = float(old.weight.norm(dim=1).mean())
    bias = float(old.bias.min())
    old_texts = [text for text, gold in spec.train if gold in set(spec.base_labels)]
    old_center = (
        _mean_features(model, tokens, old_texts) if old_texts else torch.zeros(old.in_features)
    )
    for label in spec.labels[len(spec.base_labels) :]:
        texts = [text for text, gold in spec.train if gold == label] or [label.replace("_", " ")]
        direction = torch.nn.functional.normalize(
            _mean_features(model, tokens, texts) - old_center, dim=0
        )
        head.weight[index[label]] = direction * scale
        head.bias[index[label]] = bias
    model.head = head


def _mean_features(model: TextClassifier, tokens: TokenBatcher, texts: list[str]) -> torch.Tensor:
    chunks = [
        model.features(*TokenBatcher.pad(tokens.ids(texts[i : i + 64])))
        for i in range(0, len(texts), 64)
    ]
    return torch.cat(chunks).mean(0)


def _maybe_int8(
    spec: FineTuneSpec, fp32: LoadedVersion, tokenizer_path: Path
) -> tuple[LoadedVersion, str, Int8Check]:
    staging = Path(spec.staging_dir)
    quantize_int8(staging / "model.onnx", staging / "model.int8.onnx")
    int8 = load_for_check(
        staging / "model.int8.onnx", tokenizer_path, spec.labels, spec.max_seq_length, spec.threads
    )
    fp32_acc, int8_acc = _accuracy(fp32, spec.validation), _accuracy(int8, spec.validation)
    accepted = fp32_acc - int8_acc <= spec.int8_max_accuracy_drop
    info = Int8Check(fp32_accuracy=fp32_acc, int8_accuracy=int8_acc, accepted=accepted)
    if accepted:
        return int8, "model.int8.onnx", info
    (staging / "model.int8.onnx").unlink()
    return fp32, "model.onnx", info


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
    return _correct_given(session.labels, pairs, _predict(trained, session, pairs))


def _correct_given(labels: list[str], pairs: Pairs, probabilities: FloatArray) -> list[bool]:
    predicted = [labels[i] for i in probabilities.argmax(1)]
    return [p == gold for p, (_, gold) in zip(predicted, pairs, strict=True)]


def _mean(correct: list[bool]) -> float:
    return float(np.mean(correct)) if correct else float("nan")


def _accuracy(session: LoadedVersion, pairs: Pairs) -> float:
    texts = [text for text, _ in pairs]
    probabilities = session.predict(texts).probabilities if texts else np.empty((0, 1))
    return _mean(_correct_given(session.labels, pairs, probabilities))
