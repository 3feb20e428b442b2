"""What the interleaved-rounds benchmarks share: their common options, and a run in a temporary
directory whose result may be written as JSON."""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def add_round_options(parser: argparse.ArgumentParser, rounds: int, duration: float) -> None:
    """--rounds, --requests, --duration, --state-dir, --models-dir and --json."""
    add = parser.add_argument
    add("--rounds", type=int, default=rounds, help=f"interleaved rounds (default {rounds})")
    add("--requests", type=int, default=1500, help="requests per phase (default 1500)")
    add(
        "--duration",
        type=float,
        default=duration,
        help=f"seconds cap per phase (default {duration:g})",
    )
    add("--state-dir", type=Path, help="built state dir (built if missing; default: a temp dir)")
    add("--models-dir", type=Path, default=REPO / "models", help="model definitions")
    add("--json", type=Path, help="also write the results as JSON here")


def check_round_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.rounds < 1 or args.requests < 1 or args.duration <= 0:
        parser.error("--rounds and --requests must be >= 1 and --duration > 0")


def run_in_work_dir(
    run: Callable[[argparse.Namespace, Path], dict[str, Any]],
    args: argparse.Namespace,
    prefix: str,
) -> int:
    """``run(args, work)`` in a fresh temporary directory, removed afterwards; its result
    written to ``--json`` when given."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        result = run(args, work)
        if args.json is not None:
            args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0
