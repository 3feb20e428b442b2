"""The ``loopserve`` command."""

from __future__ import annotations

import argparse
import asyncio
import copy
import csv
import datetime
import functools
import hashlib
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from service.config import ServerSettings, load_model_definition, validate_model_name
from service.domain.loop import GateResult, Job, NewSample, PurgeOutcome, VersionSummary
from service.errors import InvalidInput, LoopserveError, quote
from service.registry import ModelRegistry

if TYPE_CHECKING:
    from service.api.adaptation_client import AdaptationClient
    from service.api.channel import ChannelOptions

DEFAULT_ADDR = "localhost:8001"
DEFAULT_MODEL = "support-intents"
LABEL_BATCH = 500
LABEL_BATCH_BYTES = 3 * 1024 * 1024
MODEL_HELP = "model to address (default $LOOPSERVE_MODEL, else the server's only model)"
CSV_COLUMNS = ("text", "label", "id", "prediction_id")
CSV_FORMAT = "text,label[,id][,prediction_id]"
# Written by `loopserve candidates` for the labeler's information; `loopserve label` ignores them.
CANDIDATE_INFO_COLUMNS = ("predicted_label", "confidence", "atypicality", "score", "version")
# How `loopserve samples` shows the source of samples stored before sources were recorded.
UNRECORDED_SOURCE = "(unrecorded)"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        result: int = args.run(args)
        return result
    except LoopserveError as exc:
        print(f"loopserve: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--models-dir",
        type=Path,
        default=Path(os.environ.get("LOOPSERVE_MODELS_DIR", "models")),
        help="model definitions (default ./models)",
    )
    common.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("LOOPSERVE_STATE_DIR", ".loopserve")),
        help="runtime state: versions, databases (default ./.loopserve)",
    )
    common.add_argument("--log-level", default=os.environ.get("LOOPSERVE_LOG_LEVEL", "INFO"))

    parser = argparse.ArgumentParser(
        prog="loopserve", description="A gRPC model server that keeps itself accurate."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve", parents=[common], help="serve models over gRPC (Open Inference Protocol)"
    )
    serve.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="NAME",
        help=f"model to serve; repeat for several (default {DEFAULT_MODEL})",
    )
    serve.add_argument(
        "--host",
        default=None,
        help="gRPC bind address (default 127.0.0.1; another one needs tokens or --insecure)",
    )
    serve.add_argument(
        "--grpc-port", type=int, default=None, help="gRPC port (default 8001; 0 picks one)"
    )
    serve.add_argument(
        "--metrics-host", default=None, help="metrics bind address (default 127.0.0.1)"
    )
    serve.add_argument(
        "--health-port",
        type=int,
        default=None,
        help="also serve grpc.health.v1 alone, in plaintext, on this port (for probes that "
        "cannot speak TLS; default off)",
    )
    serve.add_argument(
        "--metrics-port", type=int, default=None, help="Prometheus port (default 9090; 0 picks one)"
    )
    serve.add_argument(
        "--drain-seconds",
        type=float,
        default=None,
        help="grace for in-flight requests on stop (default 10)",
    )
    serve.add_argument(
        "--role",
        choices=("all", "serving", "trainer"),
        default=None,
        help="all: serve and fine-tune in one process (default); serving: a replica that never "
        "runs jobs; trainer: runs jobs and publishes (both need $LOOPSERVE_DATABASE_URL)",
    )
    serve.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="this process's own scratch space: drift state, job directories (default "
        "$LOOPSERVE_WORK_DIR, else the state dir)",
    )
    _add_security_flags(serve)
    serve.add_argument(
        "--check",
        action="store_true",
        help="check the settings (tokens, TLS files, bind rules) and exit without serving",
    )
    serve.set_defaults(run=_serve)

    init = commands.add_parser(
        "init", parents=[common], help="build a model's first version from its seed data"
    )
    init.add_argument("name")
    init.add_argument(
        "--data",
        type=Path,
        help="text,label CSV: create models/NAME from it when it does not exist",
    )
    init.add_argument(
        "--if-missing", action="store_true", help="do nothing when the model already has a version"
    )
    init.set_defaults(run=_init)

    connection = _connection_parser()
    predict = commands.add_parser(
        "predict", parents=[common, connection], help="classify texts with a running server"
    )
    predict.add_argument("texts", nargs="+", metavar="TEXT")
    predict.add_argument(
        "--addr", default=DEFAULT_ADDR, help=f"server address (default {DEFAULT_ADDR})"
    )
    predict.add_argument("--model", default=os.environ.get("LOOPSERVE_MODEL"), help=MODEL_HELP)
    predict.add_argument("--json", action="store_true", help="print JSON")
    predict.set_defaults(run=_predict)

    # The closed loop, through the loopserve.v1.Adaptation service of a running server.
    remote = argparse.ArgumentParser(add_help=False, parents=[connection])
    remote.add_argument(
        "--addr", default=DEFAULT_ADDR, help=f"server address (default {DEFAULT_ADDR})"
    )
    remote.add_argument("--model", default=os.environ.get("LOOPSERVE_MODEL"), help=MODEL_HELP)
    remote.add_argument("--json", action="store_true", help="print JSON")

    label = commands.add_parser(
        "label", parents=[common, remote], help="send labeled samples from a CSV to the server"
    )
    label.add_argument("file", type=Path, metavar="FILE.csv", help=f"columns {CSV_FORMAT}")
    label.add_argument(
        "--skip-unlabeled",
        action="store_true",
        help="skip rows whose label is empty (e.g. a partly labeled candidates file)",
    )
    label.set_defaults(run=_label)

    versions = commands.add_parser(
        "versions", parents=[common, remote], help="list a model's versions"
    )
    versions.set_defaults(run=_versions)

    status = commands.add_parser(
        "status", parents=[common, remote], help="serving version, new samples, jobs, last gate"
    )
    status.set_defaults(run=_status)

    finetune = commands.add_parser(
        "finetune", parents=[common, remote], help="start a fine-tune job now"
    )
    finetune.add_argument("--reason", default="", help="recorded on the job")
    finetune.set_defaults(run=_finetune)

    drift = commands.add_parser(
        "drift", parents=[common, remote], help="drift detectors: state, statistic, alarm"
    )
    drift.set_defaults(run=_drift)

    candidates = commands.add_parser(
        "candidates",
        parents=[common, remote],
        help="write recent inputs worth labeling to a CSV for `loopserve label`",
    )
    candidates.add_argument(
        "--out", type=Path, required=True, metavar="FILE.csv", help="where to write them"
    )
    candidates.add_argument("--count", type=int, default=20, help="how many (default 20)")
    candidates.set_defaults(run=_candidates)

    rollback = commands.add_parser(
        "rollback", parents=[common, remote], help="serve an earlier promoted version again"
    )
    rollback.add_argument("version", type=int, metavar="VERSION")
    rollback.set_defaults(run=_rollback)

    samples = commands.add_parser(
        "samples",
        parents=[common, remote],
        help="stored samples per source (the token that posted them); `samples purge` deletes "
        "a source's samples",
    )
    samples.set_defaults(run=_samples)
    sample_actions = samples.add_subparsers(dest="action", metavar="ACTION")
    purge = sample_actions.add_parser(
        "purge",
        parents=[_sub_action_options(common), _sub_action_options(remote)],
        help="delete a source's samples and name the versions that may have trained on them",
    )
    purge.add_argument(
        "--source",
        required=True,
        metavar="NAME",
        help="the token name whose samples to delete, as `loopserve samples` lists it",
    )
    purge.add_argument(
        "--since",
        metavar="TIME",
        help="only the samples posted at or after TIME: ISO 8601 (2026-12-01T10:00, 2026-12-01; "
        "local time unless it names an offset) or Unix seconds (default: all of them)",
    )
    purge.add_argument(
        "--yes",
        action="store_true",
        help="do not ask for confirmation (required when stdin is not a terminal)",
    )
    purge.set_defaults(run=_purge)
    return parser


def _sub_action_options(parent: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``parent``'s options for a sub-action's parser (``samples purge``), without defaults.

    argparse copies every default of a sub-action's parser over what the command's own parser
    read, so ``samples --model m purge`` would silently lose ``--model m``. Without defaults, an
    option given before the sub-action keeps its value unless it is given again after it.
    """
    options = argparse.ArgumentParser(add_help=False)
    for action in parent._actions:
        option = copy.copy(action)
        option.default = argparse.SUPPRESS
        options._add_action(option)
    return options


def _add_security_flags(serve: argparse.ArgumentParser) -> None:
    """`serve`'s tokens, TLS and metrics credentials (secrets themselves only by file or env)."""
    serve.add_argument(
        "--tokens-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="bearer tokens, one name:scopes:token a line (default $LOOPSERVE_TOKENS_FILE; "
        "also $LOOPSERVE_TOKENS); without tokens calls are not authenticated",
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="allow a non-loopback --host without tokens (default $LOOPSERVE_INSECURE)",
    )
    serve.add_argument(
        "--tls-cert", type=Path, default=None, metavar="PEM", help="server certificate chain"
    )
    serve.add_argument(
        "--tls-key", type=Path, default=None, metavar="PEM", help="server private key"
    )
    serve.add_argument(
        "--tls-client-ca",
        type=Path,
        default=None,
        metavar="PEM",
        help="require client certificates signed by this CA (mutual TLS)",
    )
    serve.add_argument(
        "--metrics-token-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="bearer token /metrics requires (also $LOOPSERVE_METRICS_TOKEN, "
        "$LOOPSERVE_METRICS_BASIC_AUTH=user:password)",
    )


def _connection_parser() -> argparse.ArgumentParser:
    """How commands that talk to a server reach it: token and TLS."""
    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument(
        "--token",
        default=None,
        help="bearer token (default $LOOPSERVE_TOKEN, which keeps it out of the process list)",
    )
    connection.add_argument(
        "--tls", action="store_true", help="connect over TLS (implied by --tls-ca, --tls-cert)"
    )
    connection.add_argument(
        "--tls-ca",
        type=Path,
        default=None,
        metavar="PEM",
        help="CA of the server's certificate (default $LOOPSERVE_TLS_CA, else the system's)",
    )
    connection.add_argument(
        "--tls-cert",
        type=Path,
        default=None,
        metavar="PEM",
        help="client certificate for mutual TLS (default $LOOPSERVE_TLS_CLIENT_CERT)",
    )
    connection.add_argument(
        "--tls-key",
        type=Path,
        default=None,
        metavar="PEM",
        help="client key for mutual TLS (default $LOOPSERVE_TLS_CLIENT_KEY)",
    )
    connection.add_argument(
        "--tls-server-name",
        default=None,
        metavar="NAME",
        help="name the server certificate must carry, when not the --addr host "
        "(default $LOOPSERVE_TLS_SERVER_NAME)",
    )
    return connection


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


def _serve(args: argparse.Namespace) -> int:
    from service.app import App

    settings = ServerSettings.from_env(
        models=tuple(args.models) if args.models else None,
        models_dir=args.models_dir,
        state_dir=args.state_dir,
        host=args.host,
        grpc_port=args.grpc_port,
        metrics_host=args.metrics_host,
        health_port=args.health_port,
        metrics_port=args.metrics_port,
        drain_seconds=args.drain_seconds,
        role=args.role,
        work_dir=args.work_dir,
        insecure=args.insecure,
        tokens_file=args.tokens_file,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        metrics_token_file=args.metrics_token_file,
    )
    if args.check:
        _check_tls_files(settings)
        print("serve settings are valid (tokens, TLS files, metrics credentials, bind addresses)")
        return 0
    asyncio.run(App(settings).run_until_signal())
    return 0


def _check_tls_files(settings: ServerSettings) -> None:
    from service.api.server import ServerTls

    if settings.tls_cert is not None and settings.tls_key is not None:
        ServerTls(settings.tls_cert, settings.tls_key, settings.tls_client_ca).credentials()


def _init(args: argparse.Namespace) -> int:
    # Before any path is built from it: "../x" would read and write outside the state dir.
    validate_model_name(args.name)
    registry = ModelRegistry(args.state_dir, args.name)
    existing = registry.current()
    if existing is not None and args.if_missing:
        print(f"{args.name}: version {existing.version} exists; nothing to build")
        return 0
    from service.training import build_first_version, create_definition

    if args.data is not None and not (args.models_dir / args.name / "model.toml").exists():
        definition = create_definition(args.models_dir, args.name, args.data)
        print(
            f"created {definition.directory / 'model.toml'} with labels {', '.join(definition.labels)}"
        )
    else:
        definition = load_model_definition(args.models_dir, args.name)
    build_first_version(definition, registry, progress=print)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from service.api.adaptation_client import AdaptationClient
    from service.api.client import ClientError, InferenceClient

    options = _channel_options(args)
    try:
        if args.model is None:
            with AdaptationClient(args.addr, options=options) as adaptation:
                args.model = resolve_model(None, adaptation.list_models)
        client = InferenceClient(args.addr, options=options)
        try:
            results = client.classify(args.model, list(args.texts))
        finally:
            client.close()
    except ClientError as exc:
        print(f"loopserve: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(
            json.dumps(
                [
                    {"text": r.text, "label": r.label, "probabilities": r.probabilities}
                    for r in results
                ],
                indent=2,
            )
        )
    else:
        for r in results:
            print(f"{r.label}\t{r.probabilities[r.label]:.3f}\t{r.text}")
    return 0


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


def label_batches(samples: Sequence[NewSample]) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive batches of at most LABEL_BATCH samples and about
    LABEL_BATCH_BYTES of text each: the server's transport refuses messages over 4 MiB."""
    start, size = 0, 0
    for i, sample in enumerate(samples):
        weight = len(sample.text.encode()) + len(sample.label) + len(sample.id) + 64
        if i > start and (i - start >= LABEL_BATCH or size + weight > LABEL_BATCH_BYTES):
            yield start, i
            start, size = i, 0
        size += weight
    if start < len(samples):
        yield start, len(samples)


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


def read_label_csv(path: Path, skip_unlabeled: bool = False) -> list[NewSample]:
    """Samples from a ``text,label[,id][,prediction_id]`` CSV with a header row.

    Columns that ``loopserve candidates`` adds for information are ignored. Rows with an empty
    label are skipped when ``skip_unlabeled``, else refused. Raises :class:`InvalidInput` naming
    the file and line of the first problem.
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(_csv_rows(path, handle))
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path} is not UTF-8 text: {exc.reason}") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from None
    if not rows:
        raise InvalidInput(f"{path} is empty; expected a header row {CSV_FORMAT} and samples")
    (_, header), body = rows[0], rows[1:]
    columns = [name.strip().lower() for name in header]
    unknown = [name for name in columns if name not in CSV_COLUMNS + CANDIDATE_INFO_COLUMNS]
    missing = [name for name in ("text", "label") if name not in columns]
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    problems = []
    if missing:
        problems.append(f"no {' or '.join(map(repr, missing))} column")
    if unknown:
        problems.append(f"unknown column(s) {', '.join(map(repr, unknown))}")
    if repeated:
        problems.append(f"repeated column(s) {', '.join(map(repr, repeated))}")
    if problems:
        raise InvalidInput(
            f"{path}: line 1: {'; '.join(problems)}; the header must name the columns {CSV_FORMAT}"
        )
    samples = []
    for line, fields in body:
        if len(fields) != len(columns):
            raise InvalidInput(
                f"{path}: line {line}: {len(fields)} field(s) where the header has {len(columns)}"
            )
        row = dict(zip(columns, fields, strict=True))
        if skip_unlabeled and not row["label"].strip():
            continue
        for name in ("text", "label"):
            if not row[name].strip():
                raise InvalidInput(f"{path}: line {line}: empty {name}")
        samples.append(
            NewSample(
                text=row["text"],
                label=row["label"].strip(),
                id=row.get("id", "").strip() or content_id(row["text"], row["label"].strip()),
                prediction_id=row.get("prediction_id", "").strip(),
            )
        )
    if not samples:
        what = "no labeled rows" if skip_unlabeled and body else "a header but no samples"
        raise InvalidInput(f"{path} has {what}")
    return samples


def _csv_rows(path: Path, handle: TextIO) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each non-blank CSV record."""
    reader = csv.reader(handle, strict=True)
    try:
        for fields in reader:
            if fields and any(f.strip() for f in fields):
                yield reader.line_num, fields
    except csv.Error as exc:
        raise InvalidInput(f"{path}: line {reader.line_num}: {exc}") from None


@_remote
def _label(args: argparse.Namespace, client: AdaptationClient) -> int:
    from service.api.client import ClientError

    # A bad file exits 2 before anything is sent.
    samples = read_label_csv(args.file, skip_unlabeled=args.skip_unlabeled)
    accepted = duplicates = 0
    ids: list[str] = []
    for start, stop in label_batches(samples):
        try:
            outcome = client.add_samples(args.model, samples[start:stop])
        except ClientError as exc:
            if not start:
                raise
            stored = f"the first {start} samples were sent and stored before this batch"
            message = str(exc).removeprefix(f"{exc.code}: ")
            raise ClientError(exc.code, f"{message} ({stored})") from None
        accepted += outcome.accepted
        duplicates += outcome.duplicates
        ids.extend(outcome.ids)
    if args.json:
        _print_json({"accepted": accepted, "duplicates": duplicates, "ids": ids})
    else:
        print(
            f"{args.model}: {accepted} accepted, {duplicates} duplicates ({len(samples)} samples)"
        )
    return 0


@_remote
def _versions(args: argparse.Namespace, client: AdaptationClient) -> int:
    versions = client.list_versions(args.model)
    if args.json:
        _print_json([asdict(v) for v in versions])
        return 0
    rows = [
        [
            str(v.version),
            "-" if v.parent is None else str(v.parent),
            v.status,
            v.created,
            str(v.samples_upto),
            _accuracy(v),
            v.reason,
        ]
        for v in versions
    ]
    _print_table(["VERSION", "PARENT", "STATUS", "CREATED", "SAMPLES", "ACCURACY", "REASON"], rows)
    return 0


@_remote
def _status(args: argparse.Namespace, client: AdaptationClient) -> int:
    status = client.model_status(args.model)
    if args.json:
        _print_json(
            {
                **asdict(status),
                "job": _job_json(status.job) if status.job is not None else None,
                "last_gate": (
                    _gate_json(status.last_gate) if status.last_gate is not None else None
                ),
            }
        )
        return 0
    print(
        f"{status.model}: serving version {status.serving_version}, "
        f"{status.samples_since_version} new samples since"
    )
    print(f"labels: {', '.join(status.labels) or '-'}")
    print(f"job: {_job_line(status.job) if status.job is not None else 'none yet'}")
    gate = status.last_gate
    print(f"last gate: {_gate_line(gate) if gate is not None else 'none yet'}")
    print(f"needs adaptation: {'yes' if status.needs_adaptation else 'no'}")
    if status.backoff_until:
        print(f"backing off until {_time(status.backoff_until)}")
    return 0


@_remote
def _finetune(args: argparse.Namespace, client: AdaptationClient) -> int:
    job = client.start_fine_tune(args.model, args.reason)
    if args.json:
        _print_json(_job_json(job))
    else:
        print(f"job {_job_line(job)}")
    return 0


@_remote
def _rollback(args: argparse.Namespace, client: AdaptationClient) -> int:
    version = client.rollback(args.model, args.version)
    if args.json:
        _print_json(asdict(version))
    else:
        print(f"{version.model}: serving version {version.version} ({version.status})")
    return 0


@_remote
def _drift(args: argparse.Namespace, client: AdaptationClient) -> int:
    status = client.drift_status(args.model)
    if args.json:
        _print_json(asdict(status))
        return 0
    if not status.enabled:
        print(f"{status.model}: drift monitoring is off ([drift] detectors = [] in model.toml)")
        return 0
    alarm = "ALARM" if status.alarm else "no alarm"
    rate = "-" if math.isnan(status.traffic_rate) else f"{status.traffic_rate:.3g}/s"
    print(
        f"{status.model}: version {status.version}, {alarm}, estimated accuracy "
        f"{_number(status.estimated_accuracy)}, budget one false alarm per "
        f"{status.false_alarm_every_hours:g} h at {rate}, {status.samples_dropped} samples dropped"
    )
    rows = [
        [
            d.detector,
            d.method,
            d.state.value,
            _number(d.statistic),
            _number(d.threshold),
            f"{_number(d.effect)} ({d.min_effect:g})" if d.budgeted else "-",
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
    _print_table([*header, "SEEN", "REFERENCE", "NOTE"], rows)
    return 0


@_remote
def _candidates(args: argparse.Namespace, client: AdaptationClient) -> int:
    if not 1 <= args.count <= 1000:
        raise InvalidInput(f"--count must be in [1, 1000], got {args.count}")
    candidates = client.labeling_candidates(args.model, args.count)
    columns = ["text", "label", "prediction_id", *CANDIDATE_INFO_COLUMNS]
    tmp = args.out.with_name(args.out.name + ".tmp")
    try:
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for c in candidates:
                writer.writerow(
                    [
                        c.text, "", c.prediction_id, c.predicted_label, f"{c.confidence:.4f}",
                        "" if math.isnan(c.atypicality) else f"{c.atypicality:.3f}",
                        f"{c.score:.3f}", c.version,
                    ]
                )  # fmt: skip
        os.replace(tmp, args.out)
    except OSError as exc:
        raise InvalidInput(f"cannot write {args.out}: {exc.strerror or exc}") from None
    if args.json:
        _print_json([asdict(c) for c in candidates])
    else:
        print(
            f"{args.model}: wrote {len(candidates)} candidates to {args.out}; fill in the label "
            f"column, then: loopserve label {args.out} --skip-unlabeled"
        )
    return 0


@_remote
def _samples(args: argparse.Namespace, client: AdaptationClient) -> int:
    sources = client.sample_sources(args.model)
    if args.json:
        _print_json([asdict(s) for s in sources])
        return 0
    if not sources:
        print(f"{args.model}: no samples stored")
        return 0
    rows = [
        [
            s.source or UNRECORDED_SOURCE,
            str(s.samples),
            _time(s.first_created),
            _time(s.last_created),
        ]
        for s in sources
    ]
    _print_table(["SOURCE", "SAMPLES", "FIRST", "LAST"], rows)
    return 0


@_remote
def _purge(args: argparse.Namespace, client: AdaptationClient) -> int:
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
        _print_json({**asdict(outcome), "serving_version": serving, "rollback_to": target})
    else:
        print(_purge_line(outcome, serving, target))
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
        what += f" posted since {_time(since)}"
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


def _purge_line(outcome: PurgeOutcome, serving: int | None, target: int | None) -> str:
    samples = "sample" if outcome.removed == 1 else "samples"
    line = f"{outcome.model}: removed {outcome.removed} {samples} of source {outcome.source}"
    if not outcome.removed:
        return line
    line += f" (seq {outcome.first_seq}..{outcome.last_seq})"
    if not outcome.versions:
        return f"{line}; no version has trained on them"
    line += "; versions that may have trained on them: " + ", ".join(map(str, outcome.versions))
    if target is not None:
        return f"{line} — roll back with: loopserve rollback {target}"
    if serving in outcome.versions:
        return f"{line} — no earlier promoted version to roll back to"
    return line if serving is None else f"{line}; the serving version {serving} did not"


def _number(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.4g}"


def _job_json(job: Job) -> dict[str, Any]:
    return {
        **asdict(job),
        "state": job.state.value,
        "gate": _gate_json(job.gate) if job.gate is not None else None,
    }


def _gate_json(gate: GateResult) -> dict[str, Any]:
    return {**asdict(gate), "forgetting": gate.forgetting}


def _job_line(job: Job) -> str:
    line = (
        f"{job.id} {job.state.value} ({job.trigger}, base version {job.base_version}, "
        f"samples up to {job.samples_upto}, created {_time(job.created)}"
    )
    if job.attempt > 1:
        line += f", attempt {job.attempt}"
    if job.candidate_version is not None:
        line += f", candidate version {job.candidate_version}"
    line += ")"
    detail = job.error or job.reason
    return f"{line}: {detail}" if detail else line


def _gate_line(gate: GateResult) -> str:
    return (
        f"{'promote' if gate.promote else 'reject'}; new data {gate.candidate_new:.3f} vs "
        f"{gate.incumbent_new:.3f} ({gate.new_examples} examples), anchor "
        f"{gate.candidate_anchor:.3f} vs {gate.incumbent_anchor:.3f} ({gate.anchor_examples} "
        f"examples), forgetting {gate.forgetting:.3f}: {gate.reason}"
    )


def _accuracy(version: VersionSummary) -> str:
    value = version.metrics.get("validation_accuracy", version.metrics.get("accuracy"))
    return f"{value:.3f}" if isinstance(value, int | float) else "-"


def _time(unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix))


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def content_id(text: str, label: str) -> str:
    """The id of a CSV row without one: re-posting the same file is then idempotent."""
    return "csv-" + hashlib.sha256(f"{text}\x1f{label}".encode()).hexdigest()[:24]


def _print_json(value: object) -> None:
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


if __name__ == "__main__":
    sys.exit(main())
