"""Soak: a real ``loopserve serve`` with tokens under steady traffic, labels from a team and from a
junk source, fine-tunes promoted and swapped, drift monitoring on.

Builds a BANKING77 model (``--shots`` seed examples per intent), starts the server on loopback
with four tokens (``app``: infer, ``team`` and ``junk``: label, ``ops``: admin) and, for
``--minutes``:

- ``app`` sends one held-out text per request at ``--rate`` requests per second, each with its
  own request id (``soak-<n>``), so the server records every prediction for delayed labels;
- every ``--label-every`` seconds ``team`` posts ``--team-batch`` held-out labeled texts, which
  start label-triggered fine-tunes (``min_new_samples`` is set to the batch size);
- every ``--junk-every`` seconds ``junk`` posts ``--junk-copies`` copies of one phrase under one
  wrong label (distinct ids, as a flood would) and a text of control characters.

``--swap-loop`` replaces the team's labels (and so the fine-tunes) by ``--swaps`` hot swaps under
the same traffic: version 2 is published as a copy of version 1 before the server starts, and
after the warm-up ``ops`` rolls back between the two at even intervals, leaving a last interval
without a swap.

Every 30 s it prints the interval's requests by status code, the p99 latency, the load average
and the resident memory of the server, the drift worker, both together with any other long-lived
child (``total``), and of each running fine-tune job apart (jobs come and go, so they are not in
the total). At the end it checks that every acknowledged sample is in the store, that no job
whose candidate was promoted had a junk text in its data (the jobs' spec.json), and the memory
growth of the server, the drift worker and the total from the end of the warm-up to the end.

    python bench/soak.py [--data banking77/train.csv] [--minutes 10] [--rate 40] [--swap-loop]
                         [--json OUT]

Expected errors are counted apart: the control-character texts (INVALID_ARGUMENT). Everything
else that is not OK is an unexpected error. Traffic goes to 127.0.0.1 only and every loop is
bounded by ``--minutes``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.adaptation import DEFAULT_DATA, _encode, edit_model_toml, write_csv  # noqa: E402
from bench.drift import build_texts  # noqa: E402
from bench.serving import free_port, loopserve_command, proc_status_mib  # noqa: E402

MODEL = "soak-bench"
INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
INTERVAL_S = 30.0
WARMUP_S = 120.0
JUNK_TEXT = "please send my refund to this account now"
CONTROL_TEXT = "\x07\x08\x1b[2J"
TARGET_RSS_GROWTH = 0.05


@dataclass
class Interval:
    codes: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)


@dataclass
class Soak:
    """Shared state of the traffic, labeler, swapper and monitor threads."""

    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    interval: Interval = field(default_factory=Interval)
    total_codes: Counter[str] = field(default_factory=Counter)
    expected_errors: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    acknowledged: dict[str, str] = field(default_factory=dict)  # sample id -> source
    rows: list[dict[str, Any]] = field(default_factory=list)
    swaps: list[dict[str, Any]] = field(default_factory=list)

    def record(self, code: str, latency_ms: float) -> None:
        with self.lock:
            self.interval.codes[code] += 1
            self.interval.latencies_ms.append(latency_ms)
            self.total_codes[code] += 1

    def take_interval(self) -> Interval:
        with self.lock:
            taken, self.interval = self.interval, Interval()
        return taken


def metadata(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def traffic(address: str, token: str, texts: list[str], rate: float, soak: Soak) -> None:
    import grpc

    rng = random.Random(7)
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(INFER_METHOD)
        started = time.perf_counter()
        sent = 0
        while not soak.stop.is_set():
            request = _encode(MODEL, [rng.choice(texts)], f"soak-{sent}")
            begin = time.perf_counter()
            try:
                call(request, timeout=10, metadata=metadata(token))
                code = "OK"
            except grpc.RpcError as exc:
                code = exc.code().name
                with soak.lock:
                    soak.unexpected.append(f"ModelInfer {code}: {exc.details()}")
            soak.record(code, (time.perf_counter() - begin) * 1000)
            sent += 1
            pause = started + sent / rate - time.perf_counter()
            if pause > 0:
                soak.stop.wait(pause)


def post(address: str, token: str, rows: list[tuple[str, str, str]]) -> tuple[str, list[str]]:
    """AddSamples of (id, text, label) rows: (status code name, acknowledged ids)."""
    import grpc

    from service.api._proto.loopserve.v1 import adaptation_pb2 as pb
    from service.api._proto.loopserve.v1.adaptation_pb2_grpc import AdaptationStub

    request = pb.AddSamplesRequest(
        model=MODEL, samples=[pb.Sample(id=i, text=t, label=label) for i, t, label in rows]
    )
    with grpc.insecure_channel(address) as channel:
        stub = AdaptationStub(channel)  # type: ignore[no-untyped-call]
        try:
            response = stub.AddSamples(request, timeout=60, metadata=metadata(token))
        except grpc.RpcError as exc:
            return f"{exc.code().name}: {exc.details()}", []
    return "OK", list(response.ids)


def team_labels(
    address: str, token: str, rows: list[tuple[str, str]], batch: int, every: float, soak: Soak
) -> None:
    start = 0
    while not soak.stop.wait(every) and start < len(rows):
        chunk = [
            (f"team-{start + i}", t, label) for i, (t, label) in enumerate(rows[start:][:batch])
        ]
        start += batch
        code, ids = post(address, token, chunk)
        with soak.lock:
            if code != "OK":
                soak.unexpected.append(f"team AddSamples {code}")
            soak.acknowledged.update(dict.fromkeys(ids, "team"))


def junk_labels(
    address: str, token: str, label: str, copies: int, every: float, soak: Soak
) -> None:
    round_ = 0
    while not soak.stop.wait(every):
        flood = [(f"junk-{round_}-{i}", JUNK_TEXT, label) for i in range(copies)]
        code, ids = post(address, token, flood)
        control, _ = post(address, token, [(f"junk-control-{round_}", CONTROL_TEXT, label)])
        with soak.lock:
            if code != "OK":
                soak.unexpected.append(f"junk flood AddSamples {code}")
            soak.acknowledged.update(dict.fromkeys(ids, "junk"))
            if control.startswith("INVALID_ARGUMENT"):
                soak.expected_errors["AddSamples INVALID_ARGUMENT (control characters)"] += 1
            else:
                soak.unexpected.append(f"control-character text answered {control}")
        round_ += 1


def swap_loop(
    address: str, token: str, swaps: int, warmup_s: float, minutes: float, soak: Soak
) -> None:
    """``swaps`` rollbacks between versions 2 and 1 after the warm-up, evenly spaced, the last
    interval without one."""
    from service.api.adaptation_client import AdaptationClient
    from service.api.channel import ChannelOptions

    every = (minutes * 60 - warmup_s) / (swaps + 1)
    if soak.stop.wait(warmup_s):
        return
    with AdaptationClient(address, options=ChannelOptions(token=token)) as client:
        for swap in range(swaps):
            if soak.stop.wait(every):
                return
            target = 2 if swap % 2 == 0 else 1
            began = time.perf_counter()
            try:
                client.rollback(MODEL, target)
                outcome = "OK"
            except Exception as exc:  # reported, and counted as unexpected
                outcome = f"{type(exc).__name__}: {exc}"
                with soak.lock:
                    soak.unexpected.append(f"Rollback to {target}: {outcome}")
            seconds = round(time.perf_counter() - began, 2)
            soak.swaps.append({"to": target, "outcome": outcome, "seconds": seconds})
            print(f"  swap {swap + 1}/{swaps} to version {target}: {outcome} in {seconds}s")


def publish_copy(state_dir: Path) -> None:
    """Version 2: version 1's files under a new number, for the swap loop to swap to."""
    from service.registry import ModelRegistry

    registry = ModelRegistry(state_dir, MODEL)
    first = registry.get(1)
    with registry.stage(parent=1) as staged:
        for path in first.path.iterdir():
            if path.is_file() and path.name != "meta.json":
                shutil.copy(path, staged.path / path.name)
        registry.publish(staged, first.meta)


# ---- processes and memory -----------------------------------------------------------------


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(c) for c in task.read_text().split()]
        except OSError:
            continue
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def rss(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        return round(proc_status_mib(pid, "VmRSS"), 1)
    except OSError:
        return None


def memory(server_pid: int) -> dict[str, Any]:
    """Resident MiB of the server, the drift worker, their sum with the other long-lived
    children (``total``), and of each fine-tune job apart (by pid)."""
    worker = None
    others: list[int] = []
    jobs: dict[str, float | None] = {}
    for child in children(server_pid):
        line = cmdline(child)
        if "service.training.job" in line:
            jobs[str(child)] = rss(child)
        elif "spawn_main" in line and "resource_tracker" not in line:
            worker = child
        else:
            others.append(child)
    server, drift_worker = rss(server_pid), rss(worker)
    parts = [server, drift_worker, *(rss(pid) for pid in others)]
    total = round(sum(p for p in parts if p is not None), 1)
    return {"server": server, "drift_worker": drift_worker, "total": total, "jobs": jobs}


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def monitor(server_pid: int, soak: Soak, started: float) -> None:
    """A row every INTERVAL_S, and a last one as the soak stops (the end of its last interval)."""
    stopped = False
    while not stopped:
        stopped = soak.stop.wait(INTERVAL_S)
        interval = soak.take_interval()
        p99 = float(np.percentile(interval.latencies_ms, 99)) if interval.latencies_ms else None
        row = {
            "t": round(time.perf_counter() - started),
            "requests": sum(interval.codes.values()),
            "codes": dict(interval.codes),
            "p99_ms": None if p99 is None else round(p99, 2),
            "load_1min": load_average(),
            "rss_mib": memory(server_pid),
        }
        soak.rows.append(row)
        print(
            f"  t={row['t']:>4}s requests {row['requests']:>5} {row['codes']} p99 "
            f"{row['p99_ms']} ms load {row['load_1min']} RSS {row['rss_mib']}",
            flush=True,
        )


# ---- checks at the end ----------------------------------------------------------------------


def stored_ids(state_dir: Path) -> set[str]:
    with sqlite3.connect(f"file:{state_dir / 'loopserve.db'}?mode=ro", uri=True) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM samples WHERE model = ?", (MODEL,))}


def promoted_jobs_with_junk(state_dir: Path) -> tuple[int, list[str]]:
    """(jobs whose candidate was promoted, those among them with the junk text in their data)."""
    with sqlite3.connect(f"file:{state_dir / 'loopserve.db'}?mode=ro", uri=True) as conn:
        jobs = [r[0] for r in conn.execute("SELECT id FROM jobs WHERE state = 'promoted'")]
    tainted = []
    for job_id in jobs:
        spec = json.loads((state_dir / "jobs" / job_id / "spec.json").read_text())
        pairs = [p for part in ("train", "validation", "holdout", "anchor") for p in spec[part]]
        if any(text == JUNK_TEXT for text, _ in pairs):
            tainted.append(job_id)
    return len(jobs), tainted


PROCESSES = ("server", "drift_worker", "total")


def rss_growth(rows: list[dict[str, Any]], warmup_s: float, process: str) -> dict[str, Any]:
    """``process``'s resident MiB at the first reading after the warm-up and at the last, and
    the growth between them."""
    after = [r["rss_mib"][process] for r in rows if r["t"] >= warmup_s and r["rss_mib"][process]]
    if len(after) < 2:
        return {"after_warmup": None, "end": None, "growth": None}
    return {"after_warmup": after[0], "end": after[-1], "growth": float(after[-1] / after[0] - 1)}


# ---- main -----------------------------------------------------------------------------------


def setup(args: argparse.Namespace, root: Path) -> tuple[Path, Path, dict[str, Any]]:
    state_dir, models_dir = root / "state", root / "models"
    data = build_texts(args)
    if args.built is not None:
        reuse_version_one(args.built.resolve(), state_dir, models_dir)
    else:
        seed_csv = root / "seed.csv"
        write_csv(seed_csv, data["seed_rows"])
        cmd = [*loopserve_command(), "init", MODEL, "--data", str(seed_csv)]
        cmd += ["--models-dir", str(models_dir), "--state-dir", str(state_dir)]
        print(f"loopserve init {MODEL} on {len(data['seed_rows'])} seed rows ...", flush=True)
        with (root / "init.log").open("wb") as log:
            subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=True)
    edit_model_toml(
        models_dir / MODEL / "model.toml",
        {"adaptation": {"min_new_samples": args.team_batch}},
    )
    if args.swap_loop:
        publish_copy(state_dir)
    return state_dir, models_dir, data


def reuse_version_one(built: Path, state_dir: Path, models_dir: Path) -> None:
    """The model definition and version 1 of an earlier run kept with --state-dir, as they were
    after its ``loopserve init`` (samples, jobs and later versions are left behind)."""
    versions = Path("models") / MODEL / "versions"
    if not (built / "state" / versions / "1" / "meta.json").is_file():
        raise SystemExit(f"--built {built}: no version 1 of {MODEL} (keep a run with --state-dir)")
    shutil.copytree(built / "models", models_dir)
    shutil.copytree(built / "state" / versions / "1", state_dir / versions / "1")
    (state_dir / "models" / MODEL / "current").write_text("1")
    print(f"reusing version 1 of {MODEL} from {built}", flush=True)


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    state_dir, models_dir, data = setup(args, root)
    tokens = {name: secrets.token_hex(16) for name in ("app", "team", "junk", "ops")}
    scopes = {"app": "infer", "team": "label", "junk": "label", "ops": "admin"}
    tokens_file = root / "tokens"
    tokens_file.write_text("".join(f"{n}:{scopes[n]}:{t}\n" for n, t in tokens.items()))
    tokens_file.chmod(0o600)
    held_out = list(data["in_distribution"])
    random.Random(3).shuffle(held_out)
    label_rows, traffic_texts = held_out[:4000], [t for t, _ in held_out[4000:]]
    labels = sorted({label for _, label in held_out})
    grpc_port, metrics_port = free_port(), free_port()
    address = f"127.0.0.1:{grpc_port}"
    cmd = [
        *loopserve_command(), "serve", "--model", MODEL, "--state-dir", str(state_dir),
        "--models-dir", str(models_dir), "--host", "127.0.0.1", "--grpc-port", str(grpc_port),
        "--metrics-port", str(metrics_port), "--tokens-file", str(tokens_file),
        "--console-port", "0",  # its fixed default could be taken
    ]  # fmt: skip
    soak = Soak()
    with (root / "server.log").open("wb") as log:
        server = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_ready(address, tokens["app"])
            print(f"server ready; soaking for {args.minutes} min ...", flush=True)
            started = time.perf_counter()
            changes = (
                threading.Thread(
                    target=swap_loop,
                    args=(address, tokens["ops"], args.swaps, WARMUP_S, args.minutes, soak),
                )
                if args.swap_loop
                else threading.Thread(
                    target=team_labels,
                    args=(
                        address,
                        tokens["team"],
                        label_rows,
                        args.team_batch,
                        args.label_every,
                        soak,
                    ),
                )
            )
            threads = [
                threading.Thread(
                    target=traffic, args=(address, tokens["app"], traffic_texts, args.rate, soak)
                ),
                changes,
                threading.Thread(
                    target=junk_labels,
                    args=(address, tokens["junk"], labels[0], args.junk_copies, args.junk_every, soak),
                ),
                threading.Thread(target=monitor, args=(server.pid, soak, started)),
            ]  # fmt: skip
            for thread in threads:
                thread.start()
            soak.stop.wait(args.minutes * 60)
            soak.stop.set()
            for thread in threads:
                thread.join(120)
            versions = list_versions(address, tokens["ops"])
        finally:
            server.terminate()
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
    missing = sorted(set(soak.acknowledged) - stored_ids(state_dir))
    promoted_jobs, tainted = promoted_jobs_with_junk(state_dir)
    report = {
        "mode": "swap-loop" if args.swap_loop else "fine-tunes",
        "minutes": args.minutes,
        "rate": args.rate,
        "cpus": os.cpu_count(),
        "requests_by_code": dict(soak.total_codes),
        "expected_errors": dict(soak.expected_errors),
        "unexpected_errors": soak.unexpected,
        "acknowledged_samples": len(soak.acknowledged),
        "acknowledged_by_source": dict(Counter(soak.acknowledged.values())),
        "missing_samples": missing,
        "versions": versions,
        "promoted_jobs": promoted_jobs,
        "promoted_jobs_with_junk": tainted,
        "swaps": soak.swaps,
        "rss_after_warmup": {p: rss_growth(soak.rows, WARMUP_S, p) for p in PROCESSES},
        "job_peak_rss_mib": max(
            (m for r in soak.rows for m in r["rss_mib"]["jobs"].values() if m), default=None
        ),
        "load_1min": [r["load_1min"] for r in soak.rows],
        "intervals": soak.rows,
    }
    print_summary(report)
    return report


def wait_ready(address: str, token: str, timeout: float = 300.0) -> None:
    import grpc

    from service.api._proto.inference import grpc_predict_v2_pb2 as pb
    from service.api._proto.inference.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = GRPCInferenceServiceStub(channel)
        while True:
            try:
                if stub.ServerReady(
                    pb.ServerReadyRequest(), timeout=2, metadata=metadata(token)
                ).ready:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not become ready")
            time.sleep(0.5)


def list_versions(address: str, token: str) -> list[dict[str, Any]]:
    from service.api.adaptation_client import AdaptationClient
    from service.api.channel import ChannelOptions

    with AdaptationClient(address, options=ChannelOptions(token=token)) as client:
        return [
            {"version": v.version, "status": v.status, "parent": v.parent, "reason": v.reason}
            for v in client.list_versions(MODEL)
        ]


def print_summary(report: dict[str, Any]) -> None:
    print("\nsummary")
    print(f"  requests by code: {report['requests_by_code']}")
    print(f"  expected errors: {report['expected_errors']}")
    unexpected = report["unexpected_errors"]
    print(
        f"  unexpected errors: {len(unexpected)} (target 0) {'OK' if not unexpected else 'MISSED'}"
    )
    for line in unexpected[:10]:
        print(f"    {line}")
    missing = report["missing_samples"]
    print(
        f"  acknowledged samples {report['acknowledged_samples']} "
        f"{report['acknowledged_by_source']}, missing from the store: {len(missing)} (target 0) "
        f"{'OK' if not missing else 'MISSED'}"
    )
    promoted = [v for v in report["versions"] if v["status"] in ("serving", "promoted", "retired")]
    print(f"  versions: {[(v['version'], v['status']) for v in report['versions']]}")
    print(
        f"  promoted jobs {report['promoted_jobs']}, with the junk text in their data: "
        f"{len(report['promoted_jobs_with_junk'])} (target 0) "
        f"{'OK' if not report['promoted_jobs_with_junk'] else 'MISSED'}; "
        f"versions beyond the first: {max(0, len(promoted) - 1)}"
    )
    if report["swaps"]:
        ok = sum(s["outcome"] == "OK" for s in report["swaps"])
        print(f"  swaps: {ok} of {len(report['swaps'])} OK")
    for process, growth in report["rss_after_warmup"].items():
        print_growth(process, growth)
    print(f"  fine-tune jobs' peak RSS: {report['job_peak_rss_mib']} MiB (not in the total)")
    loads = report["load_1min"]
    if loads:
        print(
            f"  load average (1 min) over the run: {min(loads)}-{max(loads)}, {report['cpus']} CPUs"
        )


def print_growth(process: str, growth: dict[str, Any]) -> None:
    value = growth["growth"]
    if value is None:
        print(f"  {process} RSS growth after {WARMUP_S:.0f}s warm-up: not measured")
        return
    verdict = "OK" if value < TARGET_RSS_GROWTH else "MISSED"
    print(
        f"  {process} RSS after {WARMUP_S:.0f}s warm-up {growth['after_warmup']} MiB, at the end "
        f"{growth['end']} MiB: {value * 100:+.1f}% (target < 5%) {verdict}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("--data", type=Path, default=DEFAULT_DATA, help="text,label CSV (BANKING77 train.csv)")
    add("--shots", type=int, default=10, help="seed examples per intent (10)")
    add("--mix-intents", type=int, default=8, help=argparse.SUPPRESS)
    add("--minutes", type=float, default=10.0, help="how long to soak (10)")
    add("--rate", type=float, default=40.0, help="predict requests per second (40)")
    add("--label-every", type=float, default=90.0, help="seconds between team batches (90)")
    add("--team-batch", type=int, default=200, help="labeled texts per team batch (200)")
    add("--junk-every", type=float, default=45.0, help="seconds between junk floods (45)")
    add("--junk-copies", type=int, default=500, help="copies of the junk phrase per flood (500)")
    add("--swap-loop", action="store_true", help="hot swaps instead of the team's labels")
    add("--swaps", type=int, default=10, help="swaps of --swap-loop after the warm-up (10)")
    add("--state-dir", type=Path, help="keep everything here (must be new or empty)")
    add(
        "--built",
        type=Path,
        help="reuse the model of a run kept with --state-dir instead of building one (minutes)",
    )
    add("--json", type=Path, help="write the report here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.data.is_file():
        raise SystemExit(f"no data file {args.data}")
    if args.state_dir is not None:
        if args.state_dir.exists() and any(args.state_dir.iterdir()):
            raise SystemExit(f"--state-dir {args.state_dir} is not empty; give a new directory")
        args.state_dir.mkdir(parents=True, exist_ok=True)
        root, keep = args.state_dir.resolve(), True
    else:
        root, keep = Path(tempfile.mkdtemp(prefix="loopserve-soak-")), False
    try:
        report = run(args, root)
        if args.json is not None:
            args.json.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
        failed = report["unexpected_errors"] or report["missing_samples"]
        return 1 if failed or report["promoted_jobs_with_junk"] else 0
    finally:
        if keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
