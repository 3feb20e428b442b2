"""Commands that talk to a running server: predictions and the closed loop."""

from __future__ import annotations

import argparse
import csv
import datetime
import functools
import math
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from service import tasks
from service.cli._output import (
    accuracy_cell,
    gate_json,
    gate_line,
    int8_fallback_lines,
    job_json,
    job_line,
    number_cell,
    print_json,
    print_table,
    purge_line,
    review_lines,
    serves_cell,
    time_cell,
)
from service.cli._sending import LabelReport, classify_inputs, label_inputs
from service.domain.loop import VersionSummary
from service.errors import InvalidInput, quote
from service.tasks import (
    CANDIDATE_INFO_COLUMNS,
    CandidateColumn,
    ClientSide,
    FileError,
    LabeledInputs,
)

if TYPE_CHECKING:
    from service.api.adaptation_client import AdaptationClient
    from service.api.channel import ChannelOptions
    from service.api.client import Classification
    from service.drift import Candidate


# How `loopserve samples` shows the source of samples stored before sources were recorded.
UNRECORDED_SOURCE = "(unrecorded)"
# A candidate's payload fields, which its task's input column stands for in the output.
PAYLOADS = ("text", "content")


def _channel_options(args: argparse.Namespace) -> ChannelOptions:
    from service.api.channel import ChannelOptions

    return ChannelOptions.from_env(
        token=args.token,
        tls=args.tls or None,
        ca=args.tls_ca,
        cert=args.tls_cert,
        key=args.tls_key,
        server_name=args.tls_server_name,
    )


def run_predict(args: argparse.Namespace) -> int:
    """Each argument is an input of the model's task (a text, a file): label, confidence and
    the input, a line each; inputs the task reports one by one have their errors each."""
    from service.api.adaptation_client import AdaptationClient
    from service.api.client import ClientError, InferenceClient

    options = _channel_options(args)
    try:
        if args.model is None:
            with AdaptationClient(args.addr, options=options) as adaptation:
                args.model = resolve_model(None, adaptation.list_models)
        client = InferenceClient(args.addr, options=options)
        try:
            side = tasks.get(client.model_task(args.model)).client()
            inputs = side.predict_inputs(args.texts)
            results, errors = classify_inputs(client, args.model, side, inputs)
        finally:
            client.close()
    except ClientError as exc:
        print(f"loopserve: {exc}", file=sys.stderr)
        return 1
    _print_predictions(args, side.argument, results, errors)
    return 1 if errors else 0


def _print_predictions(
    args: argparse.Namespace, key: str, results: list[Classification], errors: list[FileError]
) -> None:
    if args.json:
        rows = [{key: r.name, "label": r.label, "probabilities": r.probabilities} for r in results]
        print_json(rows + [asdict(e) for e in errors])
    else:
        for r in results:
            print(f"{r.label}\t{r.probabilities[r.label]:.3f}\t{r.name}")
    for e in errors:
        print(f"loopserve: {e.file}: {e.error}", file=sys.stderr)


# ---- the closed loop ----------------------------------------------------------------------------

Command = Callable[[argparse.Namespace, "AdaptationClient"], int]


def _remote(command: Command) -> Callable[[argparse.Namespace], int]:
    """Run ``command`` with a client; a server error exits 1 with ``loopserve: CODE: message``."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        from service.api.adaptation_client import AdaptationClient
        from service.api.client import ClientError

        options = _channel_options(args)
        try:
            with AdaptationClient(args.addr, options=options) as client:
                args.model = resolve_model(args.model, client.list_models)
                return command(args, client)
        except ClientError as exc:
            print(f"loopserve: {exc}", file=sys.stderr)
            return 1

    return run


def resolve_model(requested: str | None, served: Callable[[], list[str]]) -> str:
    """The model a remote command addresses: ``requested`` (``--model`` or ``$LOOPSERVE_MODEL``)
    when given, else the only model the server serves (``served`` asks it).

    Raises :class:`InvalidInput` when the server serves several models (naming them) or none;
    errors of ``served`` propagate.
    """
    if requested:
        return requested
    models = served()
    if len(models) == 1:
        return models[0]
    if not models:
        raise InvalidInput("the server serves no model")
    raise InvalidInput(
        f"the server serves {len(models)} models ({', '.join(models)}); "
        "choose one with --model or LOOPSERVE_MODEL"
    )


@_remote
def run_label(args: argparse.Namespace, client: AdaptationClient) -> int:
    side = tasks.recognising(lambda side: side.recognises_file(args.file)).client()
    # A malformed file exits 2 before anything is sent.
    inputs = side.read_labels(args.file, skip_unlabeled=args.skip_unlabeled)
    report = label_inputs(client, args.model, side, inputs)
    _print_label_report(args, side, inputs, report)
    return 1 if report.errors else 0


def _print_label_report(
    args: argparse.Namespace, side: ClientSide, inputs: LabeledInputs, report: LabelReport
) -> None:
    counts = f"{args.model}: {report.accepted} accepted, {report.duplicates} duplicates"
    listed = f"({inputs.listed} {side.noun})"
    if not side.report_each:
        if args.json:
            print_json({k: v for k, v in asdict(report).items() if k != "errors"})
        else:
            print(f"{counts} {listed}")
        return
    if args.json:
        print_json(asdict(report))
    else:
        print(f"{counts}, {len(report.errors)} refused {listed}")
    for e in report.errors:
        print(f"loopserve: {e.file}: {e.error}", file=sys.stderr)


@_remote
def run_versions(args: argparse.Namespace, client: AdaptationClient) -> int:
    versions = client.list_versions(args.model)
    if args.json:
        print_json([asdict(v) for v in versions])
        return 0
    rows = [
        [
            str(v.version),
            "-" if v.parent is None else str(v.parent),
            v.status,
            v.created,
            str(v.samples_upto),
            accuracy_cell(v),
            serves_cell(v),
            v.reason,
        ]
        for v in versions
    ]
    header = ["VERSION", "PARENT", "STATUS", "CREATED", "SAMPLES", "ACCURACY", "SERVES", "REASON"]
    print_table(header, rows)
    for version in versions:
        if version.status == "pending" and version.review is not None:
            print()
            print("\n".join(review_lines(version.version, version.review)))
    fallbacks = int8_fallback_lines(versions)
    if fallbacks:
        print()
        print("\n".join(fallbacks))
    return 0


@_remote
def run_status(args: argparse.Namespace, client: AdaptationClient) -> int:
    status = client.model_status(args.model)
    if args.json:
        print_json(
            {
                **asdict(status),
                "job": job_json(status.job) if status.job is not None else None,
                "last_gate": (
                    gate_json(status.last_gate) if status.last_gate is not None else None
                ),
            }
        )
        return 0
    print(
        f"{status.model}: serving version {status.serving_version}, "
        f"{status.samples_since_version} new samples since"
    )
    print(f"labels: {', '.join(status.labels) or '-'}")
    print(f"job: {job_line(status.job) if status.job is not None else 'none yet'}")
    gate = status.last_gate
    print(f"last gate: {gate_line(gate) if gate is not None else 'none yet'}")
    print(f"needs adaptation: {'yes' if status.needs_adaptation else 'no'}")
    if status.backoff_until:
        print(f"backing off until {time_cell(status.backoff_until)}")
    return 0


@_remote
def run_finetune(args: argparse.Namespace, client: AdaptationClient) -> int:
    job = client.start_fine_tune(args.model, args.reason)
    if args.json:
        print_json(job_json(job))
    else:
        print(f"job {job_line(job)}")
    return 0


@_remote
def run_cancel(args: argparse.Namespace, client: AdaptationClient) -> int:
    job = client.cancel_job(args.model, args.job_id)
    if args.json:
        print_json(job_json(job))
        return 0
    print(f"job {job_line(job)}")
    if job.cancel_requested:  # another process (the trainer) runs it
        print("the process that runs the job ends it at its next poll")
    return 0


@_remote
def run_rollback(args: argparse.Namespace, client: AdaptationClient) -> int:
    version = client.rollback(args.model, args.version)
    return _print_version(args, version, f"serving version {version.version} ({version.status})")


@_remote
def run_approve(args: argparse.Namespace, client: AdaptationClient) -> int:
    version = client.approve_version(args.model, args.version)
    return _print_version(
        args, version, f"version {version.version} approved, now {version.status}"
    )


@_remote
def run_reject(args: argparse.Namespace, client: AdaptationClient) -> int:
    version = client.reject_version(args.model, args.version)
    return _print_version(
        args, version, f"version {version.version} {version.status}; it never serves"
    )


def _print_version(args: argparse.Namespace, version: VersionSummary, line: str) -> int:
    if args.json:
        print_json(asdict(version))
    else:
        print(f"{version.model}: {line}")
    return 0


@_remote
def run_drift(args: argparse.Namespace, client: AdaptationClient) -> int:
    status = client.drift_status(args.model)
    if args.json:
        print_json(asdict(status))
        return 0
    if not status.enabled:
        print(f"{status.model}: drift monitoring is off ([drift] detectors = [] in model.toml)")
        return 0
    alarm = "ALARM" if status.alarm else "no alarm"
    rate = "-" if math.isnan(status.traffic_rate) else f"{status.traffic_rate:.3g}/s"
    print(
        f"{status.model}: version {status.version}, {alarm}, estimated accuracy "
        f"{number_cell(status.estimated_accuracy)}, budget one false alarm per "
        f"{status.false_alarm_every_hours:g} h at {rate}, {status.samples_dropped} samples dropped"
    )
    rows = [
        [
            d.detector,
            d.method,
            d.state.value,
            number_cell(d.statistic),
            number_cell(d.threshold),
            f"{number_cell(d.effect)} ({d.min_effect:g})" if d.budgeted else "-",
            "yes" if d.alarm else "no",
            str(d.samples_seen),
            f"{d.reference_source} ({d.reference_size})"
            if d.reference_size
            else d.reference_source,
            d.message or ("" if d.budgeted else "online: diagnostic only"),
        ]
        for d in status.detectors
    ]
    header = ["DETECTOR", "METHOD", "STATE", "STATISTIC", "THRESHOLD", "EFFECT (MIN)", "ALARM"]
    print_table([*header, "SEEN", "REFERENCE", "NOTE"], rows)
    return 0


@_remote
def run_candidates(args: argparse.Namespace, client: AdaptationClient) -> int:
    if not 1 <= args.count <= 1000:
        raise InvalidInput(f"--count must be in [1, 1000], got {args.count}")
    candidates = client.labeling_candidates(args.model, args.count)
    payloads = [c.content or c.text for c in candidates]
    side = tasks.recognising(lambda side: side.recognises_payloads(payloads)).client()
    try:
        column = side.write_candidates(args.out, payloads)
        _write_candidates_csv(args.out, column, candidates)
    except OSError as exc:
        raise InvalidInput(f"cannot write {args.out}: {exc.strerror or exc}") from None
    if args.json:
        print_json(
            [
                {column.name: value, **{k: v for k, v in asdict(c).items() if k not in PAYLOADS}}
                for c, value in zip(candidates, column.values, strict=True)
            ]
        )
    else:
        print(
            f"{args.model}: wrote {len(candidates)} candidates to {args.out}{column.note}; fill "
            f"in the label column, then: loopserve label {args.out} --skip-unlabeled"
        )
    return 0


def _write_candidates_csv(out: Path, column: CandidateColumn, candidates: list[Candidate]) -> None:
    """``<input>,label,prediction_id,<information>``, replacing ``out`` whole."""
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([column.name, "label", "prediction_id", *CANDIDATE_INFO_COLUMNS])
        for cell, c in zip(column.cells, candidates, strict=True):
            writer.writerow(
                [
                    cell, "", c.prediction_id, c.predicted_label, f"{c.confidence:.4f}",
                    "" if math.isnan(c.atypicality) else f"{c.atypicality:.3f}",
                    f"{c.score:.3f}", c.version,
                ]
            )  # fmt: skip
    os.replace(tmp, out)


@_remote
def run_samples(args: argparse.Namespace, client: AdaptationClient) -> int:
    sources = client.sample_sources(args.model)
    if args.json:
        print_json([asdict(s) for s in sources])
        return 0
    if not sources:
        print(f"{args.model}: no samples stored")
        return 0
    rows = [
        [
            s.source or UNRECORDED_SOURCE,
            str(s.samples),
            time_cell(s.first_created),
            time_cell(s.last_created),
        ]
        for s in sources
    ]
    print_table(["SOURCE", "SAMPLES", "FIRST", "LAST"], rows)
    return 0


@_remote
def run_purge(args: argparse.Namespace, client: AdaptationClient) -> int:
    from service.api.client import ClientError

    # A bad --since or a missing confirmation exits 2 before anything is deleted.
    since = parse_time("--since", args.since) if args.since is not None else None
    if not args.yes and not _confirm_purge(args, client, since):
        print("loopserve: not confirmed; nothing was deleted", file=sys.stderr)
        return 1
    outcome = client.purge_samples(args.model, args.source, since)
    versions: list[VersionSummary] = []
    if outcome.versions:
        try:
            versions = client.list_versions(args.model)
        except ClientError as exc:  # the purge is done: report it, without a suggestion
            print(f"loopserve: cannot suggest a rollback: {exc}", file=sys.stderr)
    serving = next((v.version for v in versions if v.status == "serving"), None)
    target = rollback_target(versions, outcome.versions)
    if args.json:
        jobs = [job_json(job) for job in outcome.jobs]
        print_json(
            {**asdict(outcome), "jobs": jobs, "serving_version": serving, "rollback_to": target}
        )
    else:
        print(purge_line(outcome, serving, target))
    return 0


def parse_time(flag: str, text: str) -> float:
    """Unix seconds from ISO 8601 (``2026-12-01T10:00``, ``2026-12-01``; local time unless the
    text names an offset) or from Unix seconds; InvalidInput naming ``flag`` otherwise."""
    try:
        value = float(text)
    except ValueError:
        try:
            return datetime.datetime.fromisoformat(text.strip()).timestamp()
        except (ValueError, OverflowError, OSError):
            raise InvalidInput(
                f"{flag} {quote(text)} is neither an ISO 8601 time (2026-12-01T10:00, "
                "2026-12-01) nor Unix seconds"
            ) from None
    if not math.isfinite(value):
        raise InvalidInput(f"{flag} must be a finite time, got {quote(text)}")
    return value


def _confirm_purge(args: argparse.Namespace, client: AdaptationClient, since: float | None) -> bool:
    """Ask on the terminal; without one, refuse (InvalidInput, exit 2): a script must say --yes."""
    what = f"the samples of source {args.source}"
    if since is not None:
        what += f" posted since {time_cell(since)}"
    if not sys.stdin.isatty():
        raise InvalidInput(
            f"not deleting {what} from {args.model} without confirmation (stdin is not a "
            "terminal); pass --yes"
        )
    stored = sum(s.samples for s in client.sample_sources(args.model) if s.source == args.source)
    try:
        answer = input(f"{args.model}: delete {what} (of {stored} stored)? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def rollback_target(versions: list[VersionSummary], tainted: list[int]) -> int | None:
    """The version to roll back to after a purge: the newest earlier promoted version that did
    not train on the purged samples, when the serving version may have; None otherwise."""
    serving = next((v.version for v in versions if v.status == "serving"), None)
    if serving is None or serving not in tainted:
        return None
    clean = [
        v.version
        for v in versions
        if v.status in ("promoted", "retired") and v.version not in tainted
    ]
    return max(clean, default=None)
