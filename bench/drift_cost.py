"""What drift monitoring costs serving: the default model with monitoring on against the same
model with ``[drift] detectors = []``, in one run, over interleaved rounds.

Two real ``loopserve serve`` processes run side by side, each on its own copy of one built state
dir (the default model, its default int8-or-fp32 choice): one with the model's drift settings,
one with monitoring off. Both are warmed up first; the monitored one until its detectors are
fitted (``reference_size`` requests) and scoring windows. Then each round drives one server and
then the other (the order alternates from round to round) from a separate client process, one
text per ModelInfer request, with ``bench/serving.py``'s client: latency at concurrency 1 and
throughput at concurrency 16. It prints, per server, the median and the spread over the rounds of
p50 and p99 at c=1 and throughput at c=16, the ratios of the medians, and where the CPU went:
milliseconds of server CPU and of drift-worker CPU per request.

With ``--profile SECONDS`` it then samples each server with py-spy (``pip install py-spy``;
non-blocking, 200 Hz) while driving it for that long, and prints the share of the server's busy
samples per thread and the project functions that hold the most of them: where the extra cost of
monitoring goes.

    .venv/bin/python bench/drift_cost.py [--rounds 5] [--requests 1500] [--duration 20]
        [--profile SECONDS] [--state-dir DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench._interleaved import add_round_options, check_round_options, run_in_work_dir  # noqa: E402
from bench.drift import drift_worker_pid, ready  # noqa: E402
from bench.serving import (  # noqa: E402
    MODEL,
    ServerProcess,
    bench_server,
    ensure_built,
    load_texts,
    machine_info,
    models_dir_with_threads,
    models_dir_without_drift,
    prepare_variant,
    proc_cpu_seconds,
    proc_status_mib,
    server_default_threads,
)

TARGET_OVERHEAD = 0.05
CALIBRATION_TIMEOUT_S = 300.0
MODES = ("off", "on")


@dataclass
class Round:
    mode: str
    p50_ms: float
    p99_ms: float
    texts_per_s: float  # c=16
    server_cpu_ms: float  # per request, c=1 and c=16 phases together
    worker_cpu_ms: float  # per request, over the same client run (warm-up and check included)
    server_ms_c1: float  # time inside the server per request at c=1 (its own histogram)
    errors: int


@dataclass
class Summary:
    mode: str
    rounds: list[Round] = field(default_factory=list)

    def values(self, name: str) -> list[float]:
        return [float(getattr(r, name)) for r in self.rounds]

    def median(self, name: str) -> float:
        return statistics.median(self.values(name))

    def spread(self, name: str) -> tuple[float, float]:
        values = self.values(name)
        return min(values), max(values)


def wait_detectors(server: ServerProcess, texts_file: Path, names: list[str]) -> float:
    """Send traffic until every detector is fitted; seconds it took."""
    from service.api.adaptation_client import AdaptationClient

    started = time.perf_counter()
    with AdaptationClient(server.address) as client:
        while not ready(client.drift_status(MODEL), names):
            if time.perf_counter() - started > CALIBRATION_TIMEOUT_S:
                raise TimeoutError(f"detectors not ready after {CALIBRATION_TIMEOUT_S:.0f}s")
            bench_server(server, texts_file, 400, 30.0, "warm-up")
    return time.perf_counter() - started


def measure(
    mode: str, server: ServerProcess, texts_file: Path, requests: int, duration: float
) -> Round:
    worker = drift_worker_pid(server.proc.pid)
    worker_cpu0 = proc_cpu_seconds(worker) if worker else 0.0
    phases, _ = bench_server(server, texts_file, requests, duration, mode)
    worker_cpu = (proc_cpu_seconds(worker) - worker_cpu0) if worker else 0.0
    c1, c16 = phases
    served = c1.requests + c16.requests
    return Round(
        mode=mode,
        p50_ms=c1.p50_ms,
        p99_ms=c1.p99_ms,
        texts_per_s=c16.texts_per_s,
        server_cpu_ms=(c1.cpu_ms_per_text * c1.texts + c16.cpu_ms_per_text * c16.texts) / served,
        worker_cpu_ms=worker_cpu * 1000.0 / served,
        server_ms_c1=c1.internals.get("server_request_ms", float("nan")),
        errors=c1.errors + c16.errors,
    )


def profile(server: ServerProcess, texts_file: Path, seconds: float, out: Path) -> dict[str, Any]:
    """Sample ``server`` with py-spy for ``seconds`` while driving it (c=1, then c=16)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).is_file():
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    command = [
        py_spy, "record", "--pid", str(server.proc.pid), "--duration", str(int(seconds)),
        "--rate", "200", "--format", "raw", "--threads", "--nonblocking", "-o", str(out),
    ]  # fmt: skip
    sampler = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bench_server(server, texts_file, 1_000_000, seconds / 2, "profile")
    sampler.wait(timeout=seconds + 60)
    return busy_samples(out.read_text(encoding="utf-8"))


def busy_samples(raw: str) -> dict[str, Any]:
    """Busy samples per thread (numbers stripped from pool names) and per project function
    (inclusive: a function counts once per sample it is on the stack of)."""
    threads: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        name = re.sub(r"[-_]?\d+", "", frames[0].split(": ", 1)[-1])
        threads[name] += int(count)
        seen = {
            re.sub(r":\d+\)$", ")", frame)
            for frame in frames[1:]
            if "service/" in frame or "bench/" in frame
        }
        for function in seen:
            functions[function] += int(count)
    total = sum(threads.values())
    return {
        "samples": total,
        "threads": {k: v / total for k, v in threads.most_common()} if total else {},
        "functions": {k: v / total for k, v in functions.most_common(25)} if total else {},
    }


def print_profile(profiles: dict[str, dict[str, Any]]) -> None:
    for mode, result in profiles.items():
        print(f"\nprofile, monitoring {mode}: {result['samples']} busy samples")
        for name, share in result["threads"].items():
            if share >= 0.005:
                print(f"  thread {name:40} {share:6.1%}")
        for name, share in list(result["functions"].items())[:15]:
            print(f"    {share:6.1%}  {name}")


def report(summaries: dict[str, Summary]) -> dict[str, Any]:
    off, on = summaries["off"], summaries["on"]
    rows: dict[str, Any] = {}
    for name, higher_is_worse in (("p50_ms", True), ("p99_ms", True), ("texts_per_s", False)):
        ratio = on.median(name) / off.median(name)
        pairs = [a / b for a, b in zip(on.values(name), off.values(name), strict=True)]
        cost = ratio - 1 if higher_is_worse else 1 - ratio
        rows[name] = {
            "off_median": off.median(name),
            "off_spread": off.spread(name),
            "on_median": on.median(name),
            "on_spread": on.spread(name),
            "on_over_off": ratio,
            "per_round_ratios": pairs,
            "cost": cost,
        }
    for name in ("server_cpu_ms", "worker_cpu_ms", "server_ms_c1"):
        rows[name] = {"off_median": off.median(name), "on_median": on.median(name)}
    return rows


def print_report(rows: dict[str, Any], rounds: int) -> None:
    print(f"\ndrift monitoring off vs on, {rounds} interleaved rounds (median [min-max])")
    for name, unit in (("p50_ms", "ms"), ("p99_ms", "ms"), ("texts_per_s", "texts/s")):
        row = rows[name]
        lo, hi = row["off_spread"]
        on_lo, on_hi = row["on_spread"]
        target = ""
        if name != "p99_ms":
            met = row["cost"] <= TARGET_OVERHEAD
            target = f"  (target <= {TARGET_OVERHEAD:.0%}: {'met' if met else 'MISSED'})"
        ratios = ", ".join(f"{r:.3f}" for r in row["per_round_ratios"])
        print(
            f"  {name:12} off {row['off_median']:8.2f} [{lo:.2f}-{hi:.2f}] {unit}   "
            f"on {row['on_median']:8.2f} [{on_lo:.2f}-{on_hi:.2f}]   "
            f"cost {row['cost'] * 100:+.1f}%{target}\n               per-round on/off: {ratios}"
        )
    print("  CPU per request (median over rounds):")
    for name, what in (
        ("server_cpu_ms", "server process"),
        ("worker_cpu_ms", "drift worker"),
        ("server_ms_c1", "time inside the server at c=1"),
    ):
        row = rows[name]
        print(f"    {what:32} off {row['off_median']:.3f} ms   on {row['on_median']:.3f} ms")


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from service.config import load_model_definition

    definition = load_model_definition(args.models_dir, MODEL)
    threads = definition.serving.intra_op_threads or server_default_threads()
    spinning = definition.serving.thread_spinning
    models = {"on": models_dir_with_threads(args.models_dir, threads, work, spinning)}
    models["off"] = models_dir_without_drift(models["on"], work)
    detectors = list(load_model_definition(models["on"], MODEL).drift.detectors)
    source_state = (args.state_dir or work / "build").resolve()
    ensure_built(source_state, args.models_dir)
    texts, source = load_texts()
    texts_file = work / "texts.json"
    texts_file.write_text(json.dumps(texts), encoding="utf-8")
    variant = "int8" if definition.serving.int8 else "fp32"
    print(f"{len(texts)} texts from {source}; {variant}, {threads} intra-op threads", flush=True)

    servers: dict[str, ServerProcess] = {}
    try:
        for mode in MODES:
            state, _ = prepare_variant(source_state, variant, work / mode)
            servers[mode] = ServerProcess(state, models[mode], work / f"server-{mode}.log")
            servers[mode].wait_ready()
        bench_server(servers["off"], texts_file, 400, 30.0, "warm-up")
        calibration_s = wait_detectors(servers["on"], texts_file, detectors)
        print(f"detectors {detectors} fitted after {calibration_s:.1f}s of traffic", flush=True)
        summaries = {mode: Summary(mode) for mode in MODES}
        for i in range(args.rounds):
            for mode in MODES if i % 2 == 0 else tuple(reversed(MODES)):
                result = measure(mode, servers[mode], texts_file, args.requests, args.duration)
                summaries[mode].rounds.append(result)
                print(
                    f"  round {i + 1} {mode:3}: p50 {result.p50_ms:.2f} ms, p99 "
                    f"{result.p99_ms:.2f} ms, c=16 {result.texts_per_s:.0f} texts/s, server "
                    f"{result.server_cpu_ms:.2f} + worker {result.worker_cpu_ms:.3f} CPU-ms/request",
                    flush=True,
                )
        profiles = {
            mode: profile(servers[mode], texts_file, args.profile, work / f"profile-{mode}.txt")
            for mode in MODES
            if args.profile
        }
        memory = {
            mode: {
                "server_rss_mib": proc_status_mib(s.proc.pid, "VmRSS"),
                "worker_rss_mib": (
                    proc_status_mib(w, "VmRSS") if (w := drift_worker_pid(s.proc.pid)) else None
                ),
            }
            for mode, s in servers.items()
        }
    finally:
        for server in servers.values():
            server.stop()
    rows = report(summaries)
    print_report(rows, args.rounds)
    print(f"  memory: {memory}")
    print_profile(profiles)
    return {
        "machine": machine_info(threads, [], source, len(texts)),
        "variant": variant,
        "rounds": {m: [asdict(r) for r in s.rounds] for m, s in summaries.items()},
        "summary": rows,
        "memory": memory,
        "calibration_s": calibration_s,
        "profiles": profiles,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add_round_options(parser, rounds=5, duration=20.0)
    parser.add_argument("--profile", type=float, default=0.0, metavar="SECONDS",
        help="then sample each server with py-spy for this long (default 0: no profile)")  # fmt: skip
    args = parser.parse_args(argv)
    check_round_options(parser, args)
    return run_in_work_dir(run, args, "loopserve-drift-cost-")


if __name__ == "__main__":
    sys.exit(main())
