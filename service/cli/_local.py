"""Commands that run here, not against a server: ``serve`` and ``init`` (a model of any task)."""

from __future__ import annotations

import argparse
import asyncio

from service import tasks
from service.config import (
    ModelDefinition,
    ServerSettings,
    load_model_definition,
    validate_model_name,
)
from service.registry import ModelRegistry


def run_serve(args: argparse.Namespace) -> int:
    from service.app import App
    from service.memory import bound_heap

    settings = ServerSettings.from_env(
        models=tuple(args.models) if args.models else None,
        models_dir=args.models_dir,
        state_dir=args.state_dir,
        host=args.host,
        grpc_port=args.grpc_port,
        metrics_host=args.metrics_host,
        health_port=args.health_port,
        metrics_port=args.metrics_port,
        console=args.console,
        console_host=args.console_host,
        console_port=args.console_port,
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
    # Before any thread starts: model versions come and go for days in this process.
    bound_heap()
    return asyncio.run(App(settings).run_until_signal())


def _check_tls_files(settings: ServerSettings) -> None:
    from service.api.server import ServerTls

    if settings.tls_cert is not None and settings.tls_key is not None:
        ServerTls(settings.tls_cert, settings.tls_key, settings.tls_client_ca).credentials()


def run_init(args: argparse.Namespace) -> int:
    # Before any path is built from it: "../x" would read and write outside the state dir.
    validate_model_name(args.name)
    registry = ModelRegistry(args.state_dir, args.name)
    existing = registry.current()
    if existing is not None and args.if_missing:
        print(f"{args.name}: version {existing.version} exists; nothing to build")
        return 0
    from service.training import build_first_version

    if args.data is not None and not (args.models_dir / args.name / "model.toml").exists():
        definition = _create_definition(args)
        print(
            f"created {definition.directory / 'model.toml'} with labels {', '.join(definition.labels)}"
        )
    else:
        definition = load_model_definition(args.models_dir, args.name)
    tasks.get(definition.task).client().prepare_seed(definition)
    build_first_version(definition, registry, progress=print)
    return 0


def _create_definition(args: argparse.Namespace) -> ModelDefinition:
    """models/NAME from ``--data``, read by the task ``--task`` names."""
    side = tasks.by_option(args.task).client()
    return side.create_definition(args.models_dir, args.name, args.data)
