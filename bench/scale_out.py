"""Scale-out benchmark: serving throughput of one replica of a PostgreSQL deployment against the
single-process server, on the default model.

Starts a throwaway PostgreSQL (scripts/postgres.sh, Debian's binaries) and, over one state dir
built by ``loopserve init``:

- ``single``: ``loopserve serve`` (role all, SQLite), as on one machine;
- ``replica``: the same model served by a ``--role serving`` replica on PostgreSQL (following
  the head row, its listener and pool open), alone on the machine as a replica is on its node:
  the trainer that adopted the head row has stopped;
- ``replica+neighbours``: the same, with replica B and the trainer running beside it on the same
  cores (idle: B gets no traffic), as when several processes share one small host.

Each is driven by bench/serving.py's client process (one text per ModelInfer, concurrency 1 and
16). The two alternate for ``--rounds`` rounds so that drift of the machine's speed hits both.
The ratio replica / single of the median c=16 throughput is the figure (target: within 5 %).
Usage::

    .venv/bin/python bench/scale_out.py [--rounds 2] [--duration 20] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serving

REPO = serving.REPO
POSTGRES = REPO / "scripts" / "postgres.sh"
MODES = ("single", "replica", "replica+neighbours")


def start_postgres(directory: Path) -> str:
    out = subprocess.run(
        ["bash", str(POSTGRES), "start", str(directory)], check=True, capture_output=True, text=True
    )
    admin = out.stdout.strip().splitlines()[-1]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("CREATE DATABASE loopserve_bench")
    return admin.rsplit("/", 1)[0] + "/loopserve_bench"


def phase_rps(phases: list[Any], concurrency: int) -> float:
    return float(next(p.texts_per_s for p in phases if p.name == f"server c={concurrency}"))


def phase_cpu(phases: list[Any], concurrency: int) -> float:
    phase = next(p for p in phases if p.name == f"server c={concurrency}")
    return float(phase.cpu_ms_per_text)


def phase_p50(phases: list[Any]) -> float:
    return float(next(p.p50_ms for p in phases if p.name == "server c=1"))


def run_single(state: Path, models: Path, work: Path, texts: Path, args: Any) -> list[Any]:
    log = work / f"single-{time.monotonic_ns()}.log"
    with serving.ServerProcess(state, models, log) as server:
        server.wait_ready()
        time.sleep(2)
        phases, _ = serving.bench_server(server, texts, args.requests, args.duration)
    return phases


def run_replica(
    state: Path, models: Path, work: Path, texts: Path, url: str, args: Any, neighbours: bool
) -> list[Any]:
    env = {"LOOPSERVE_DATABASE_URL": url}
    started: list[serving.ServerProcess] = []

    def start(name: str, role: str) -> serving.ServerProcess:
        local = work / f"work-{name}"
        local.mkdir(exist_ok=True)
        server = serving.ServerProcess(
            state, models, work / f"{name}-{time.monotonic_ns()}.log",
            extra=("--role", role, "--work-dir", str(local)), env=env,
        )  # fmt: skip
        started.append(server)
        server.wait_ready()
        return server

    try:
        trainer = start("trainer", "trainer")
        if neighbours:
            start("b", "serving")
        replica = start("a", "serving")
        if not neighbours:
            trainer.stop()
        time.sleep(2)  # let the starts settle, as in the single-process phase's warm-up
        phases, _ = serving.bench_server(replica, texts, args.requests, args.duration)
    finally:
        for server in reversed(started):
            server.stop()
    return phases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per phase")
    parser.add_argument("--requests", type=int, default=4000, help="cap per phase")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="loopserve-scale-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # as root, PostgreSQL runs as its own user and must reach its dir
        state, models = work / "state", REPO / "models"
        serving.ensure_built(state, models)
        texts, source = serving.load_texts()
        texts_file = work / "texts.json"
        texts_file.write_text(json.dumps(texts), encoding="utf-8")
        url = start_postgres(work / "pg")
        results: dict[str, list[list[Any]]] = {m: [] for m in MODES}
        try:
            for round_ in range(args.rounds):
                print(f"round {round_ + 1}: single process ...", flush=True)
                results["single"].append(run_single(state, models, work, texts_file, args))
                for mode, neighbours in (("replica", False), ("replica+neighbours", True)):
                    print(f"round {round_ + 1}: {mode} ...", flush=True)
                    results[mode].append(
                        run_replica(state, models, work, texts_file, url, args, neighbours)
                    )
        finally:
            subprocess.run(["bash", str(POSTGRES), "stop", str(work / "pg")], check=False)
    report = summarize(results, source, args)
    print(json.dumps(report, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


def summarize(results: dict[str, list[list[Any]]], source: str, args: Any) -> dict[str, Any]:
    report: dict[str, Any] = {
        "machine": f"{os.cpu_count()} CPUs, {serving.platform.platform()}",
        "texts": source,
        "duration_s": args.duration,
        "rounds": args.rounds,
    }
    for mode, rounds in results.items():
        report[mode] = {
            "c16_rps": [round(phase_rps(p, 16), 1) for p in rounds],
            "c1_p50_ms": [round(phase_p50(p), 2) for p in rounds],
            # Server CPU per text at c=16: far steadier than throughput on a shared VM.
            "c16_server_cpu_ms_per_text": [round(phase_cpu(p, 16), 3) for p in rounds],
        }
    single = statistics.median(report["single"]["c16_rps"])
    single_cpu = statistics.median(report["single"]["c16_server_cpu_ms_per_text"])
    for mode in ("replica", "replica+neighbours"):
        ratio = statistics.median(report[mode]["c16_rps"]) / single
        report[f"{mode}_over_single_c16"] = round(ratio, 3)
        cpu = statistics.median(report[mode]["c16_server_cpu_ms_per_text"]) / single_cpu
        report[f"{mode}_over_single_cpu_per_text"] = round(cpu, 3)
    return report


if __name__ == "__main__":
    raise SystemExit(main())
