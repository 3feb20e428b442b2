"""The ``loopserve`` command: ``main`` parses the command line (``_parser``) and runs a command
that works here (``_local``: serve, init) or against a running server (``_remote``), sending a
task's inputs in bounded requests (``_sending``, ``_labels``) and printing through ``_output``.
What differs by task (reading texts or files, label files, candidates files, seed data) is the
task's client side (``service.tasks.ClientSide``), chosen by ``--task``, by the served model's
metadata, or by the file or payloads it recognises."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from service.cli._labels import LABEL_BATCH, LABEL_BATCH_BYTES, label_batches
from service.cli._parser import build_parser
from service.cli._remote import parse_time, resolve_model, rollback_target
from service.errors import LoopserveError

__all__ = [
    "LABEL_BATCH",
    "LABEL_BATCH_BYTES",
    "label_batches",
    "main",
    "parse_time",
    "resolve_model",
    "rollback_target",
]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
