"""How commands print: tables, one-line summaries and JSON of jobs, gates and versions."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from service.domain.loop import GateResult, Job, PurgeOutcome, VersionSummary
from service.domain.review import ReviewEvidence

if TYPE_CHECKING:
    pass


def purge_line(outcome: PurgeOutcome, serving: int | None, target: int | None) -> str:
    """What a purge removed, and what the source's samples went into: the same versions and
    jobs when the purge is repeated and removes nothing."""
    samples = "sample" if outcome.removed == 1 else "samples"
    line = f"{outcome.model}: removed {outcome.removed} {samples} of source {outcome.source}"
    if outcome.removed:
        line += f" (seq {outcome.first_seq}..{outcome.last_seq})"
    if not outcome.versions and not outcome.jobs:
        return f"{line}; no version or job trained on its samples"
    if outcome.versions:
        line += "; versions that trained on its samples: " + ", ".join(map(str, outcome.versions))
    if outcome.jobs:
        line += "; jobs: " + ", ".join(_purged_job(job) for job in outcome.jobs)
    if target is not None:
        return f"{line} — roll back with: loopserve rollback {target}"
    if serving in outcome.versions:
        return f"{line} — no earlier promoted version to roll back to"
    if serving is None or not outcome.versions:
        return line
    return f"{line}; the serving version {serving} did not"


def _purged_job(job: Job) -> str:
    if job.state.finished:
        return f"{job.id} ({job.state.value})"
    return f"{job.id} ({job.state.value}: stopped, its candidate is never published)"


def review_lines(version: int, review: ReviewEvidence) -> list[str]:
    """Why a version waits for review, and what an operator should look at to decide."""
    sources = ", ".join(f"{name} ({count})" for name, count in sorted(review.sources.items()))
    lines = [
        f"version {version} waits for review: " + "; ".join(review.reasons),
        f"  sources: {sources}",
        f"  confident disagreement with the serving version: {review.confident_disagreement:.1%} "
        f"of {review.known_samples} samples",
        f"  predictions changed on recent traffic: {review.flip_rate:.1%} of {review.traffic}",
    ]
    for title, changes in (
        ("posted labels against the serving version", review.contradictions),
        ("changed predictions on traffic", review.flips),
    ):
        if changes:
            lines.append(f"  {title}:")
        for change in changes:
            lines.append(f"    {change.before} -> {change.after}: {change.count}")
            lines.extend(f"      {example}" for example in change.examples)
    lines.append(f"  decide with: loopserve approve {version}  |  loopserve reject {version}")
    return lines


def number_cell(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.4g}"


def job_json(job: Job) -> dict[str, Any]:
    return {
        **asdict(job),
        "state": job.state.value,
        "cancel_requested": job.cancel_requested,
        "gate": gate_json(job.gate) if job.gate is not None else None,
        "data": job.data.to_dict() if job.data is not None else None,  # seq ranges as pairs
    }


def gate_json(gate: GateResult) -> dict[str, Any]:
    return {**asdict(gate), "forgetting": gate.forgetting}


def job_line(job: Job) -> str:
    state = job.state.value + (", cancel requested" if job.cancel_requested else "")
    line = (
        f"{job.id} {state} ({job.trigger}, base version {job.base_version}, "
        f"samples up to {job.samples_upto}, created {time_cell(job.created)}"
    )
    if job.attempt > 1:
        line += f", attempt {job.attempt}"
    if job.candidate_version is not None:
        line += f", candidate version {job.candidate_version}"
    line += ")"
    detail = job.error or job.reason
    return f"{line}: {detail}" if detail else line


def gate_line(gate: GateResult) -> str:
    return (
        f"{'promote' if gate.promote else 'reject'}; new data {gate.candidate_new:.3f} vs "
        f"{gate.incumbent_new:.3f} ({gate.new_examples} examples), anchor "
        f"{gate.candidate_anchor:.3f} vs {gate.incumbent_anchor:.3f} ({gate.anchor_examples} "
        f"examples), forgetting {gate.forgetting:.3f}: {gate.reason}"
    )


def accuracy_cell(version: VersionSummary) -> str:
    value = version.metrics.get("validation_accuracy", version.metrics.get("accuracy"))
    return f"{value:.3f}" if isinstance(value, int | float) else "-"


def serves_cell(version: VersionSummary) -> str:
    """The graph a version serves, with its int8 check's accuracy drop (fp32 minus int8)."""
    check = version.int8
    if check is None:
        return "fp32 (int8 off)"
    graph = "int8" if check.accepted else "fp32"
    drop = "no check" if math.isnan(check.drop) else f"int8 drop {check.drop:.3f}"
    return f"{graph} ({drop})"


def int8_fallback_lines(versions: list[VersionSummary]) -> list[str]:
    """Why each version whose int8 check failed serves fp32."""
    return [
        f"version {v.version} serves fp32: {v.int8.reason}"
        for v in versions
        if v.int8 is not None and not v.int8.accepted
    ]


def time_cell(unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix))


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def print_json(value: object) -> None:
    print(json.dumps(_finite(value), indent=2))


def _finite(value: object) -> object:
    """NaN/inf (e.g. a gate score without examples) as null: strict JSON parsers reject them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
