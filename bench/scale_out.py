"""Scale-out benchmark: serving throughput of one replica of a PostgreSQL deployment against the
single-process server, on the default model.

Starts a throwaway PostgreSQL (scripts/postgres.sh, Debian's binaries) and, over one state dir
built by ``loopserve init``:

- ``single``: ``loopserve serve`` (role all, SQLite), as on one machine;
- ``replica``: the same model served by ``--role serving`` replica A while replica B and the
  trainer run beside it (idle: B gets no traffic), all on PostgreSQL, following the head row.

Each is driven by bench/serving.py's client process (one text per ModelInfer, concurrency 1 and
16). The two alternate for ``--rounds`` rounds so that drift of the machine's speed hits both.
The ratio replica / single of the c=16 throughput is the figure (target: within 5 %).
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


def phase_p50(phases: list[Any]) -> float:
    return float(next(p.p50_ms for p in phases if p.name == "server c=1"))


def run_single(state: Path, models: Path, work: Path, texts: Path, args: Any) -> list[Any]:
    log = work / f"single-{time.monotonic_ns()}.log"
    with serving.ServerProcess(state, models, log) as server:
        server.wait_ready()
        phases, _ = serving.bench_server(server, texts, args.requests, args.duration)
    return phases


def run_replica(
    state: Path, models: Path, work: Path, texts: Path, url: str, args: Any
) -> list[Any]:
    env = {"LOOPSERVE_DATABASE_URL": url}
    started: list[serving.ServerProcess] = []
    try:
        for name, role in (("trainer", "trainer"), ("b", "serving"), ("a", "serving")):
            local = work / f"work-{name}"
            local.mkdir(exist_ok=True)
            server = serving.ServerProcess(
                state, models, work / f"{name}-{time.monotonic_ns()}.log",
                extra=("--role", role, "--work-dir", str(local)), env=env,
            )  # fmt: skip
            started.append(server)
            server.wait_ready()
        phases, _ = serving.bench_server(started[-1], texts, args.requests, args.duration)
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
        results: dict[str, list[list[Any]]] = {"single": [], "replica": []}
        try:
            for round_ in range(args.rounds):
                print(f"round {round_ + 1}: single process ...", flush=True)
                results["single"].append(run_single(state, models, work, texts_file, args))
                print(f"round {round_ + 1}: replica of a PostgreSQL deployment ...", flush=True)
                results["replica"].append(run_replica(state, models, work, texts_file, url, args))
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
        }
    single = statistics.median(report["single"]["c16_rps"])
    replica = statistics.median(report["replica"]["c16_rps"])
    report["replica_over_single_c16"] = round(replica / single, 3)
    return report


if __name__ == "__main__":
    raise SystemExit(main())
