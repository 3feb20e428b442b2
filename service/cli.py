"""The ``loopserve`` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from service.config import ServerSettings, load_model_definition
from service.errors import LoopserveError
from service.registry import ModelRegistry

DEFAULT_ADDR = "localhost:8001"
DEFAULT_MODEL = "support-intents"


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
    serve.add_argument("--host", default=None, help="bind address (default 0.0.0.0)")
    serve.add_argument(
        "--grpc-port", type=int, default=None, help="gRPC port (default 8001; 0 picks one)"
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

    predict = commands.add_parser(
        "predict", parents=[common], help="classify texts with a running server"
    )
    predict.add_argument("texts", nargs="+", metavar="TEXT")
    predict.add_argument(
        "--addr", default=DEFAULT_ADDR, help=f"server address (default {DEFAULT_ADDR})"
    )
    predict.add_argument("--model", default=DEFAULT_MODEL)
    predict.add_argument("--json", action="store_true", help="print JSON")
    predict.set_defaults(run=_predict)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from service.app import App

    settings = ServerSettings.from_env(
        models=tuple(args.models) if args.models else None,
        models_dir=args.models_dir,
        state_dir=args.state_dir,
        host=args.host,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        drain_seconds=args.drain_seconds,
    )
    asyncio.run(App(settings).run_until_signal())
    return 0


def _init(args: argparse.Namespace) -> int:
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
    from service.api.client import InferenceClient

    client = InferenceClient(args.addr)
    try:
        results = client.classify(args.model, list(args.texts))
    finally:
        client.close()
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


if __name__ == "__main__":
    sys.exit(main())
