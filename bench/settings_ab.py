"""Two settings of the default model against each other: the same built version served twice, in
one run, over interleaved rounds.

Each side is a real ``loopserve serve`` on its own copy of one built state dir, with model.toml
overrides of its own (``--a`` and ``--b``, each ``section.key=value`` in TOML syntax,
repeatable). Both are warmed up. Then each round drives one server and then the other (the order
alternates from round to round) from a separate client process, one text per ModelInfer request,
with ``bench/serving.py``'s client: latency at concurrency 1 and throughput at concurrency 16.
It prints each side's median and spread over the rounds, the per-round ratios b / a and their
median: on a machine whose speed drifts, the ratio of two servers measured a few seconds apart
is steadier than either figure alone.

    .venv/bin/python bench/settings_ab.py --a serving.thread_spin_us=0 \\
        --b serving.thread_spin_us=100 [--rounds 7] [--requests 1500] [--duration 5]
        [--state-dir DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench._interleaved import add_round_options, check_round_options, run_in_work_dir  # noqa: E402
from bench.adaptation import edit_model_toml, parse_set  # noqa: E402
from bench.serving import (  # noqa: E402
    MODEL,
    ServerProcess,
    bench_server,
    ensure_built,
    load_texts,
    machine_info,
    prepare_variant,
    server_default_threads,
)

SIDES = ("a", "b")
FIGURES = (("p50_ms", "p50 c=1", "ms"), ("p99_ms", "p99 c=1", "ms"), ("texts_per_s", "c=16", "/s"))


@dataclass(frozen=True)
class Round:
    p50_ms: float
    p99_ms: float
    texts_per_s: float  # c=16
    server_cpu_ms: float  # per request, both phases
    errors: int


def models_dir_with(models_dir: Path, overrides: list[str], target: Path) -> Path:
    """A copy of ``models_dir`` whose model carries ``overrides``; stops the bench when the
    model refuses one (an unknown key, a value out of range), as ``loopserve serve`` would."""
    from service.config import load_model_definition
    from service.errors import ConfigError

    shutil.copytree(models_dir, target)
    wanted = parse_set(overrides)
    edit_model_toml(target / MODEL / "model.toml", wanted)
    try:
        load_model_definition(target, MODEL)
    except ConfigError as exc:
        raise SystemExit(f"{' '.join(overrides)}: {exc}") from None
    return target


def measure(server: ServerProcess, texts_file: Path, requests: int, duration: float) -> Round:
    c1, c16 = bench_server(server, texts_file, requests, duration, "ab")[0]
    failed = next((p for p in (c1, c16) if p.errors), None)
    if failed is not None:  # figures over the answered requests alone would mislead
        raise RuntimeError(f"{failed.errors} requests failed, the first: {failed.first_error}")
    served = c1.texts + c16.texts
    return Round(
        p50_ms=c1.p50_ms,
        p99_ms=c1.p99_ms,
        texts_per_s=c16.texts_per_s,
        server_cpu_ms=(c1.cpu_ms_per_text * c1.texts + c16.cpu_ms_per_text * c16.texts) / served,
        errors=c1.errors + c16.errors,
    )


def summary(rounds: dict[str, list[Round]]) -> dict[str, Any]:
    """Per figure: each side's median and spread, the per-round ratios b / a and their median."""
    rows: dict[str, Any] = {}
    for name, _, _ in (*FIGURES, ("server_cpu_ms", "", "")):
        values = {side: [float(getattr(r, name)) for r in rounds[side]] for side in SIDES}
        ratios = [b / a for a, b in zip(values["a"], values["b"], strict=True)]
        rows[name] = {
            **{f"{side}_median": statistics.median(values[side]) for side in SIDES},
            **{f"{side}_spread": (min(values[side]), max(values[side])) for side in SIDES},
            "b_over_a": ratios,
            "b_over_a_median": statistics.median(ratios),
        }
    return rows


def print_summary(rows: dict[str, Any], settings: dict[str, list[str]], rounds: int) -> None:
    print(f"\n{rounds} interleaved rounds, median [min-max]")
    for side in SIDES:
        print(f"  {side}: {' '.join(settings[side]) or '(the model as it is)'}")
    for name, label, unit in (*FIGURES, ("server_cpu_ms", "server CPU/request", "ms")):
        row = rows[name]
        a_lo, a_hi = row["a_spread"]
        b_lo, b_hi = row["b_spread"]
        ratios = ", ".join(f"{r:.2f}" for r in row["b_over_a"])
        print(
            f"  {label:19} a {row['a_median']:8.2f} [{a_lo:.2f}-{a_hi:.2f}] {unit:3}  "
            f"b {row['b_median']:8.2f} [{b_lo:.2f}-{b_hi:.2f}]  b/a median "
            f"{row['b_over_a_median']:.3f} ({ratios})"
        )
    print("  p50, p99 and CPU: b/a below 1 favours b; c=16 throughput: above 1 favours b.")


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from service.config import load_model_definition

    settings = {"a": args.a or [], "b": args.b or []}
    models = {s: models_dir_with(args.models_dir, settings[s], work / f"models-{s}") for s in SIDES}
    source_state = (args.state_dir or work / "build").resolve()
    ensure_built(source_state, args.models_dir)
    definition = load_model_definition(args.models_dir, MODEL)
    variant = "int8" if definition.serving.int8 else "fp32"
    texts, source = load_texts()
    texts_file = work / "texts.json"
    texts_file.write_text(json.dumps(texts), encoding="utf-8")
    servers: dict[str, ServerProcess] = {}
    rounds: dict[str, list[Round]] = {side: [] for side in SIDES}
    try:
        for side in SIDES:
            state, _ = prepare_variant(source_state, variant, work / side)
            servers[side] = ServerProcess(state, models[side], work / f"server-{side}.log")
            servers[side].wait_ready()
            bench_server(servers[side], texts_file, 400, 30.0, "warm-up")
        for i in range(args.rounds):
            for side in SIDES if i % 2 == 0 else tuple(reversed(SIDES)):
                result = measure(servers[side], texts_file, args.requests, args.duration)
                rounds[side].append(result)
                print(
                    f"  round {i + 1} {side}: p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} "
                    f"ms, c=16 {result.texts_per_s:.0f} texts/s, server "
                    f"{result.server_cpu_ms:.2f} CPU-ms/request, {result.errors} errors",
                    flush=True,
                )
    finally:
        for server in servers.values():
            server.stop()
    rows = summary(rounds)
    print_summary(rows, settings, args.rounds)
    threads = definition.serving.intra_op_threads or server_default_threads()
    return {
        "machine": machine_info(threads, [], source, len(texts)),
        "variant": variant,
        "settings": settings,
        "rounds": {side: [asdict(r) for r in rounds[side]] for side in SIDES},
        "summary": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--a", action="append", metavar="SECTION.KEY=VALUE", help="side a's")
    parser.add_argument("--b", action="append", metavar="SECTION.KEY=VALUE", help="side b's")
    add_round_options(parser, rounds=7, duration=5.0)
    args = parser.parse_args(argv)
    check_round_options(parser, args)
    if not args.a and not args.b:
        parser.error("give --a or --b (or both): the settings that differ")
    return run_in_work_dir(run, args, "loopserve-settings-ab-")


if __name__ == "__main__":
    sys.exit(main())
