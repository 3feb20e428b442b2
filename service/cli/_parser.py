"""The command line: every command, its flags and the function that runs it."""

from __future__ import annotations

import argparse
import copy
import os
from pathlib import Path
from typing import TypeAlias

from service import tasks
from service.cli._local import run_init, run_serve
from service.cli._remote import (
    run_approve,
    run_cancel,
    run_candidates,
    run_drift,
    run_finetune,
    run_label,
    run_predict,
    run_purge,
    run_reject,
    run_rollback,
    run_samples,
    run_status,
    run_versions,
)

DEFAULT_ADDR = "localhost:8001"
DEFAULT_MODEL = "support-intents"
MODEL_HELP = "model to address (default $LOOPSERVE_MODEL, else the server's only model)"


Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def build_parser() -> argparse.ArgumentParser:
    common = _common_parser()
    # The closed loop, through the loopserve.v1.Adaptation service of a running server.
    remote = _remote_parser(_connection_parser())
    parser = argparse.ArgumentParser(
        prog="loopserve", description="A gRPC model server that keeps itself accurate."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    _add_serve(commands, common)
    _add_init(commands, common)
    _add_predict(commands, [common, remote])
    _add_label(commands, [common, remote])
    _add_loop_views(commands, [common, remote])
    _add_version_decisions(commands, [common, remote])
    _add_samples(commands, common, remote)
    return parser


def _common_parser() -> argparse.ArgumentParser:
    """Where every command finds models and state, and how much it logs."""
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
    return common


def _remote_parser(connection: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Which server and model a command addresses, and whether it prints JSON."""
    remote = argparse.ArgumentParser(add_help=False, parents=[connection])
    remote.add_argument(
        "--addr", default=DEFAULT_ADDR, help=f"server address (default {DEFAULT_ADDR})"
    )
    remote.add_argument("--model", default=os.environ.get("LOOPSERVE_MODEL"), help=MODEL_HELP)
    remote.add_argument("--json", action="store_true", help="print JSON")
    return remote


def _add_serve(commands: Commands, common: argparse.ArgumentParser) -> None:
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
    _add_address_flags(serve)
    _add_process_flags(serve)
    _add_security_flags(serve)
    serve.add_argument(
        "--check",
        action="store_true",
        help="check the settings (tokens, TLS files, bind rules) and exit without serving",
    )
    serve.set_defaults(run=run_serve)


def _add_address_flags(serve: argparse.ArgumentParser) -> None:
    """`serve`'s addresses and ports: gRPC, health, metrics and the web console."""
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
        "--console-host",
        default=None,
        help="web console bind address (default 127.0.0.1; another one needs tokens or --insecure)",
    )
    serve.add_argument(
        "--console-port",
        type=int,
        default=None,
        help="web console port (default 8080; 0 picks one)",
    )
    serve.add_argument(
        "--no-console",
        dest="console",
        action="store_false",
        default=None,
        help="do not serve the web console (default $LOOPSERVE_CONSOLE, on)",
    )


def _add_process_flags(serve: argparse.ArgumentParser) -> None:
    """`serve`'s role in a deployment, its scratch space and how it stops."""
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


def _add_init(commands: Commands, common: argparse.ArgumentParser) -> None:
    init = commands.add_parser(
        "init", parents=[common], help="build a model's first version from its seed data"
    )
    init.add_argument("name")
    helps = _task_helps()
    init.add_argument(
        "--data",
        type=Path,
        help="create models/NAME from it when it does not exist: "
        + ", or ".join(h.data for h in helps),
    )
    options = [h.option for h in helps]
    named = [f"{options[0]} (default)", *options[1:]]
    init.add_argument(
        "--task",
        choices=options,
        default=options[0],
        help=f"what --data holds: {', '.join(named[:-1])} or {named[-1]} (classification)",
    )
    init.add_argument(
        "--if-missing", action="store_true", help="do nothing when the model already has a version"
    )
    init.set_defaults(run=run_init)


def _add_predict(commands: Commands, parents: list[argparse.ArgumentParser]) -> None:
    helps = _task_helps()
    predict = commands.add_parser(
        "predict",
        parents=parents,
        help=f"classify {', or '.join(h.inputs for h in helps)}, with a running server",
    )
    predict.add_argument(
        "texts", nargs="+", metavar="TEXT", help="; ".join(h.arguments for h in helps)
    )
    predict.set_defaults(run=run_predict)


def _add_label(commands: Commands, parents: list[argparse.ArgumentParser]) -> None:
    label = commands.add_parser(
        "label", parents=parents, help="send labeled samples from a CSV to the server"
    )
    label.add_argument(
        "file",
        type=Path,
        metavar="FILE.csv",
        help="; ".join(h.labels for h in _task_helps()),
    )
    label.add_argument(
        "--skip-unlabeled",
        action="store_true",
        help="skip rows whose label is empty (e.g. a partly labeled candidates file)",
    )
    label.set_defaults(run=run_label)


def _task_helps() -> list[tasks.ClientHelp]:
    """What each task's client side says of itself, the default task first."""
    return [task.client().help for task in tasks.in_order()]


def _add_loop_views(commands: Commands, parents: list[argparse.ArgumentParser]) -> None:
    """What the loop holds and does: versions, status, a job now or cancelled, drift, inputs
    to label."""
    versions = commands.add_parser("versions", parents=parents, help="list a model's versions")
    versions.set_defaults(run=run_versions)
    status = commands.add_parser(
        "status", parents=parents, help="serving version, new samples, jobs, last gate"
    )
    status.set_defaults(run=run_status)
    finetune = commands.add_parser("finetune", parents=parents, help="start a fine-tune job now")
    finetune.add_argument("--reason", default="", help="recorded on the job")
    finetune.set_defaults(run=run_finetune)
    cancel = commands.add_parser(
        "cancel", parents=parents, help="cancel a queued or running fine-tune job, wherever it runs"
    )
    cancel.add_argument("job_id", metavar="JOB_ID")
    cancel.set_defaults(run=run_cancel)
    drift = commands.add_parser(
        "drift", parents=parents, help="drift detectors: state, statistic, alarm"
    )
    drift.set_defaults(run=run_drift)
    candidates = commands.add_parser(
        "candidates",
        parents=parents,
        help="write recent inputs worth labeling to a CSV for `loopserve label`",
    )
    candidates.add_argument(
        "--out", type=Path, required=True, metavar="FILE.csv", help="where to write them"
    )
    candidates.add_argument("--count", type=int, default=20, help="how many (default 20)")
    candidates.set_defaults(run=run_candidates)


def _add_version_decisions(commands: Commands, parents: list[argparse.ArgumentParser]) -> None:
    """Which version serves: rollback, and approve or reject one that waits for review."""
    for name, run, help_text in (
        ("rollback", run_rollback, "serve an earlier promoted version again"),
        (
            "approve",
            run_approve,
            "serve a version that waits for review (status pending), in place of its parent",
        ),
        ("reject", run_reject, "reject a version that waits for review"),
    ):
        command = commands.add_parser(name, parents=parents, help=help_text)
        command.add_argument("version", type=int, metavar="VERSION")
        command.set_defaults(run=run)


def _add_samples(
    commands: Commands, common: argparse.ArgumentParser, remote: argparse.ArgumentParser
) -> None:
    samples = commands.add_parser(
        "samples",
        parents=[common, remote],
        help="stored samples per source (the token that posted them); `samples purge` deletes "
        "a source's samples",
    )
    samples.set_defaults(run=run_samples)
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
    purge.set_defaults(run=run_purge)


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
