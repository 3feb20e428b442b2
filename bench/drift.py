"""Drift monitoring benchmark: false alarms, detection delay, estimated accuracy, calibration
time, memory and serving overhead.

Builds a BANKING77 model (``--shots`` seed examples per intent), serves it with ``loopserve
serve`` and streams single-text requests through it, one at a time. Every in-distribution text is
held out: no version trained on it.

1. ``reference``: the first ``reference_size`` held-out texts (the detectors' traffic reference);
2. ``in-distribution``: ``--in-distribution`` more held-out texts, the held-out set streamed over
   and over, shuffled anew each pass: every alarm here is a false alarm;
3. ``domain shift``: customer-support texts of another business (models/support-intents/seed.csv);
4. ``recovery``: held-out texts again, until alarms clear;
5. ``intent mix``: held-out texts of only ``--mix-intents`` intents (a tenth of them).

It prints model-level alarms (WatchEvents ``drift_alarm_raised``) and each detector's own signals
(``drift_signal_raised``) per phase: false alarms, and the requests from the start of a shift to
its first alarm. At the end of each phase it compares ``estimated_accuracy`` (GetDriftStatus, over
the last ``accuracy_window`` requests) with the true accuracy of those requests (none of the
other domain's texts has a BANKING77 label, so there it is 0). It also prints the calibration
time, server and drift-worker memory, and serving p50 with monitoring on vs off (alternating
servers on the same state, after warm-up).

    python bench/drift.py [--data banking77/train.csv] [--in-distribution 6000] [--json OUT]
        [--set drift.ert=4000] [--state-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.adaptation import (  # noqa: E402
    DEFAULT_DATA,
    Pool,
    _decode_labels,
    _encode,
    edit_model_toml,
    loadavg,
    parse_set,
    read_rows,
    split_rows,
    write_csv,
)
from bench.serving import ServerProcess, loopserve_command, proc_status_mib  # noqa: E402

MODEL = "drift-bench"
MODEL_LEVEL = "model"
INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
OTHER_DOMAIN = REPO / "models" / "support-intents" / "seed.csv"
INIT_TIMEOUT_S = 900.0
CALIBRATION_TIMEOUT_S = 600.0
CATCH_UP_TIMEOUT_S = 300.0
TARGET_CALIBRATION_S = 60.0
TARGET_P50_OVERHEAD = 0.05
TARGET_DELAY_REQUESTS = {"domain shift": 200, "intent mix": 1000}
TARGET_ACCURACY_ERROR = 0.03
TARGET_MEMORY_MIB = 1024.0


@dataclass
class Phase:
    name: str
    texts: list[str]
    truth: list[str] = field(default_factory=list)  # the true label of each text ("" unknown)
    start: float = 0.0
    end: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    predicted: list[str] = field(default_factory=list)
    seen_before: dict[str, int] = field(default_factory=dict)  # per detector, at the start

    def true_accuracy(self, last: int) -> float:
        pairs = list(zip(self.predicted, self.truth, strict=True))[-last:]
        return sum(p == t for p, t in pairs) / max(len(pairs), 1)


@dataclass
class AlarmEvent:
    time: float
    kind: str
    detector: str
    statistic: str
    threshold: str
    samples_seen: int  # the detector's count when it raised the alarm


class EventLog:
    """WatchEvents in a background thread; drift alarm events with their arrival times."""

    def __init__(self, address: str) -> None:
        import grpc

        from service.api._proto.loopserve.v1 import adaptation_pb2 as pb
        from service.api._proto.loopserve.v1.adaptation_pb2_grpc import AdaptationStub

        self.events: list[AlarmEvent] = []
        self._channel = grpc.insecure_channel(address)
        self._stream = AdaptationStub(self._channel).WatchEvents(pb.WatchEventsRequest(model=MODEL))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import grpc

        try:
            for event in self._stream:
                if event.kind.startswith(("drift_alarm", "drift_signal")):
                    a = event.attributes
                    self.events.append(
                        AlarmEvent(
                            time.perf_counter(),
                            event.kind,
                            a.get("detector", ""),
                            a.get("statistic", ""),
                            a.get("threshold", ""),
                            int(a.get("samples_seen", "0")),
                        )
                    )
        except grpc.RpcError:
            pass

    def raised(self, detector: str, first: int, last: int) -> list[AlarmEvent]:
        """Signals the detector raised while scoring its samples number ``first`` to ``last``."""
        return [
            e
            for e in self.events
            if e.kind == "drift_signal_raised"
            and e.detector == detector
            and first <= e.samples_seen <= last
        ]

    def model_alarms(self, start: float, end: float) -> list[AlarmEvent]:
        """Model-level alarms that arrived between ``start`` and ``end`` (perf_counter). The
        benchmark waits for the worker to score a whole phase before the next one starts, so
        arrival time attributes them to their phase."""
        return [e for e in self.events if e.kind == "drift_alarm_raised" and start <= e.time <= end]

    def close(self) -> None:
        self._stream.cancel()
        self._channel.close()


def stream(address: str, phase: Phase, prefix: str) -> None:
    import grpc

    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(INFER_METHOD)
        requests = [_encode(MODEL, [text], f"{prefix}{i}") for i, text in enumerate(phase.texts)]
        answers = []
        phase.start = time.perf_counter()
        for request in requests:
            sent = time.perf_counter()
            answers.append(call(request, timeout=30))
            done = time.perf_counter()
            phase.latencies_ms.append((done - sent) * 1000)
        phase.end = time.perf_counter()
    phase.predicted = [_decode_labels(raw)[0][0] for raw in answers]


def drift_status(address: str) -> Any:
    from service.api.adaptation_client import AdaptationClient

    with AdaptationClient(address) as client:
        return client.drift_status(MODEL)


def wait_status(address: str, predicate: Any, timeout: float) -> tuple[Any, float]:
    started = time.perf_counter()
    while True:
        status = drift_status(address)
        if predicate(status):
            return status, time.perf_counter() - started
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"drift status after {timeout:.0f}s: {status}")
        time.sleep(0.1)


def reference_of(recipe: Any, detector: str) -> str:
    return str(recipe.embedding_reference if detector == "embedding" else recipe.output_reference)


def seen(status: Any) -> dict[str, int]:
    """Samples scored so far by each ready detector."""
    return {d.detector: d.samples_seen for d in status.detectors if d.state.value == "ready"}


def phase_windows(phase: Phase, detectors: list[str]) -> dict[str, tuple[int, int]]:
    """Per detector that was ready at the start: its sample numbers during the phase."""
    return {
        d: (phase.seen_before[d] + 1, phase.seen_before[d] + len(phase.texts))
        for d in detectors
        if d in phase.seen_before
    }


def ready(status: Any, names: Sequence[str]) -> bool:
    states = {d.detector: d.state.value for d in status.detectors}
    failed = [n for n in names if states.get(n) == "failed"]
    if failed:
        raise RuntimeError(f"drift detectors failed: {status}")
    return all(states.get(n) == "ready" for n in names)


def drift_worker_pid(server_pid: int) -> int | None:
    """The drift worker: the server's child started by multiprocessing's spawn."""
    for children in Path(f"/proc/{server_pid}/task").glob("*/children"):
        for child in children.read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
                return int(child)
    return None


def memory_report(server_pid: int) -> dict[str, float | None]:
    worker = drift_worker_pid(server_pid)
    return {
        "server_rss_mib": proc_status_mib(server_pid, "VmRSS"),
        "server_peak_mib": proc_status_mib(server_pid, "VmHWM"),
        "worker_rss_mib": proc_status_mib(worker, "VmRSS") if worker else None,
        "worker_peak_mib": proc_status_mib(worker, "VmHWM") if worker else None,
    }


def cycle(rows: list[tuple[str, str]], count: int, seed: int) -> tuple[list[str], list[str]]:
    """``count`` (text, label) rows: the whole list over and over, shuffled anew each pass."""
    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    while len(out) < count:
        batch = rows[:]
        rng.shuffle(batch)
        out += batch
    return [t for t, _ in out[:count]], [label for _, label in out[:count]]


def make_phase(name: str, rows: list[tuple[str, str]], count: int, seed: int) -> Phase:
    texts, truth = cycle(rows, count, seed)
    return Phase(name, texts, truth)


# ------------------------------------------------------------------------------------- scenario


def build_texts(args: argparse.Namespace) -> dict[str, Any]:
    rows = read_rows(args.data)
    _, pool_rows = split_rows(rows, 30, seed=0)
    labels = sorted(pool_rows)
    pool = Pool(pool_rows)
    seed_rows = []
    for label in labels:
        seed_rows += pool.take([label], args.shots)
    seed_texts = {t for t, _ in seed_rows}
    unseen = [(t, lab) for t, lab in rows if t not in seed_texts]
    random.Random(1).shuffle(unseen)
    mix_labels = sorted(random.Random(2).sample(labels, args.mix_intents))
    return {
        "seed_rows": seed_rows,
        "in_distribution": unseen,
        "mix": [(t, lab) for t, lab in unseen if lab in mix_labels],
        "mix_labels": mix_labels,
        # No BANKING77 label is right for another business's texts.
        "other_domain": [(t, "") for t, _ in read_rows(OTHER_DOMAIN)],
    }


# ------------------------------------------------------------------------------------ latency


def p50_round(state_dir: Path, models_dir: Path, log: Path, texts: list[str], warmup: int) -> float:
    with ServerProcess(state_dir, models_dir, log, model=MODEL) as server:
        server.wait_ready()
        stream(server.address, Phase("warmup", texts[:warmup]), "w")
        measured = Phase("measure", texts[warmup:])
        stream(server.address, measured, "m")
        return float(np.percentile(measured.latencies_ms, 50))


def set_detectors(models_dir: Path, detectors: list[str]) -> None:
    edit_model_toml(models_dir / MODEL / "model.toml", {"drift": {"detectors": detectors}})


# ------------------------------------------------------------------------------------------ main


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from service.config import load_model_definition

    state_dir, bench_dir = root, root / "bench"
    models_dir = bench_dir / "models"
    bench_dir.mkdir(parents=True, exist_ok=True)
    data = build_texts(args)
    seed_csv = bench_dir / "seed.csv"
    write_csv(seed_csv, data["seed_rows"])
    print(f"loopserve init {MODEL} on {len(data['seed_rows'])} seed rows ...", flush=True)
    t0 = time.perf_counter()
    with (bench_dir / "init.log").open("wb") as init_log:
        cmd = [*loopserve_command(), "init", MODEL, "--data", str(seed_csv)]
        cmd += ["--models-dir", str(models_dir), "--state-dir", str(state_dir)]
        code = subprocess.run(
            cmd, cwd=REPO, stdout=init_log, stderr=subprocess.STDOUT, timeout=INIT_TIMEOUT_S
        ).returncode
    if code != 0:
        raise SystemExit(f"loopserve init failed ({code}); see {bench_dir / 'init.log'}")
    init_s = time.perf_counter() - t0
    print(f"  built version 1 in {init_s:.1f}s", flush=True)
    overrides = parse_set(args.set)
    if overrides:
        edit_model_toml(models_dir / MODEL / "model.toml", overrides)
    recipe = load_model_definition(models_dir, MODEL).drift
    detectors = list(recipe.detectors)
    in_dist = data["in_distribution"]
    phases = [
        make_phase("reference", in_dist, recipe.reference_size, 10),
        make_phase("in-distribution", in_dist, args.in_distribution, 11),
        make_phase("domain shift", data["other_domain"], args.shift_samples, 12),
        make_phase("recovery", in_dist, args.recovery_samples, 13),
        make_phase("intent mix", data["mix"], args.shift_samples, 14),
    ]
    report: dict[str, Any] = {
        "machine": loadavg(),
        "init_seconds": round(init_s, 1),
        "drift": asdict(recipe),
        "mix_intents": data["mix_labels"],
        "held_out_texts": len(in_dist),
    }
    with ServerProcess(state_dir, models_dir, bench_dir / "server-on.log", model=MODEL) as server:
        ready_s = server.wait_ready()
        events = EventLog(server.address)
        # Detectors with a training reference calibrate before any traffic; traffic-referenced
        # ones calibrate on the reference phase below.
        trained = [d for d in detectors if reference_of(recipe, d) == "training"]
        status, waited = wait_status(
            server.address, lambda s: ready(s, trained), CALIBRATION_TIMEOUT_S
        )
        fit_s = {d.detector: d.calibration_seconds for d in status.detectors}
        report["calibration"] = {
            "server_ready_seconds": round(ready_s, 2),
            "training_referenced_ready_after_start_seconds": round(ready_s + waited, 1),
            "threshold_configuration_seconds": fit_s.get("embedding"),
        }
        print(
            f"server ready in {ready_s:.1f}s; training-referenced detectors ready "
            f"{ready_s + waited:.1f}s "
            f"after start (threshold configuration {fit_s.get('embedding')}s)",
            flush=True,
        )
        accuracy: dict[str, tuple[float, float]] = {}
        for phase in phases:
            before = seen(drift_status(server.address))
            target_names = list(before)
            phase.seen_before = before
            stream(server.address, phase, phase.name[:3])
            if phase.name == "reference":
                # Traffic-referenced detectors calibrate once the reference traffic is in.
                status, waited = wait_status(
                    server.address, lambda s: ready(s, detectors), CALIBRATION_TIMEOUT_S
                )
                fits = {d.detector: d.calibration_seconds for d in status.detectors}
                report["calibration"]["ready_after_reference_seconds"] = round(waited, 2)
                report["calibration"]["fit_seconds"] = fits
                print(f"  detectors ready {waited:.2f}s after the reference traffic: {fits}")
            else:
                # The worker scores behind the traffic (it only takes idle CPU time): wait
                # until it has scored the whole phase, so alarms are attributed by sample count.
                target = {d: before[d] + len(phase.texts) for d in target_names}
                wait_status(
                    server.address,
                    lambda s, t=target: all(seen(s).get(d, 0) >= n for d, n in t.items()),
                    CATCH_UP_TIMEOUT_S,
                )
            time.sleep(1.0)  # let the last events arrive
            phase.end = time.perf_counter()
            status = drift_status(server.address)
            accuracy[phase.name] = (
                status.estimated_accuracy,
                phase.true_accuracy(recipe.accuracy_window),
            )
            first = {
                d: [e.samples_seen - phase.seen_before.get(d, 0) for e in events.raised(d, *window)]
                for d, window in phase_windows(phase, detectors).items()
            }
            first[MODEL_LEVEL] = [len(events.model_alarms(phase.start, phase.end))]
            print(
                f"  {phase.name}: {len(phase.texts)} samples, p50 "
                f"{np.percentile(phase.latencies_ms, 50):.2f} ms, alarms raised after "
                f"{ {d: v[:5] for d, v in first.items() if v} or 'none' }; estimated accuracy "
                f"{accuracy[phase.name][0]:.3f} vs true {accuracy[phase.name][1]:.3f}; budget "
                f"rate {status.traffic_rate:.1f}/s",
                flush=True,
            )
        final = drift_status(server.address)
        report["memory"] = memory_report(server.proc.pid)
        events.close()
    report["phases"] = phase_report(phases, events, detectors)
    report["estimated_accuracy"] = {
        name: {"estimated": est, "true": true, "error": est - true}
        for name, (est, true) in accuracy.items()
    }
    report["samples_dropped"] = final.samples_dropped

    print("serving p50, monitoring off vs on (alternating servers) ...", flush=True)
    texts, _ = cycle(in_dist, args.latency_warmup + args.latency_requests, 20)
    p50: dict[str, list[float]] = {"off": [], "on": []}
    for r in range(args.latency_rounds):
        for mode in ("off", "on"):
            set_detectors(models_dir, [] if mode == "off" else detectors)
            log = bench_dir / f"latency-{mode}-{r}.log"
            p50[mode].append(p50_round(state_dir, models_dir, log, texts, args.latency_warmup))
            print(f"  round {r + 1} {mode}: p50 {p50[mode][-1]:.3f} ms", flush=True)
    set_detectors(models_dir, detectors)
    # Servers differ by several percent from one start to the next: the overhead is the median
    # of the on/off ratios of consecutive pairs.
    ratios = [on / off for off, on in zip(p50["off"], p50["on"], strict=True)]
    report["latency"] = {
        "p50_ms_off": p50["off"],
        "p50_ms_on": p50["on"],
        "overhead": float(np.median(ratios)) - 1 if ratios else math.nan,
        "overhead_of_medians": (
            float(np.median(p50["on"]) / np.median(p50["off"])) - 1 if ratios else math.nan
        ),
    }
    print_summary(report)
    return report


def phase_report(phases: list[Phase], events: EventLog, detectors: list[str]) -> dict[str, Any]:
    """Per phase, for each detector's signal and for the model-level alarm: how many were
    raised, and the requests from the start of the phase to the first. The model-level alarm is
    the OR of the detectors' alarms, so when it was raised during a phase, it was raised with the
    first detector signal of that phase."""
    out: dict[str, Any] = {}
    for phase in phases:
        first: dict[str, int | None] = dict.fromkeys([MODEL_LEVEL, *detectors])
        counts = dict.fromkeys([MODEL_LEVEL, *detectors], 0)
        for d, window in phase_windows(phase, detectors).items():
            raised = events.raised(d, *window)
            counts[d] = len(raised)
            if raised:
                first[d] = raised[0].samples_seen - phase.seen_before[d]
        counts[MODEL_LEVEL] = len(events.model_alarms(phase.start, phase.end))
        delays = [v for d, v in first.items() if d != MODEL_LEVEL and v is not None]
        if counts[MODEL_LEVEL] and delays:
            first[MODEL_LEVEL] = min(delays)
        out[phase.name] = {
            "samples": len(phase.texts),
            "p50_ms": float(np.percentile(phase.latencies_ms, 50)),
            "alarms_raised": counts,
            "first_alarm_after_requests": first,
        }
    return out


def print_summary(report: dict[str, Any]) -> None:
    cal = report["calibration"]
    phases = report["phases"]
    lat = report["latency"]
    fa = phases["in-distribution"]
    print("\nsummary")
    ready_s = cal["ready_after_reference_seconds"]
    ok = ready_s is not None and ready_s <= TARGET_CALIBRATION_S
    print(
        f"  calibration: detectors ready {ready_s}s after the reference traffic "
        f"(target <= {TARGET_CALIBRATION_S:.0f}s) {'OK' if ok else 'MISSED'}"
    )
    alarms = fa["alarms_raised"]
    ok = alarms[MODEL_LEVEL] == 0
    print(
        f"  false alarms over {fa['samples']} held-out in-domain requests: model-level "
        f"{alarms[MODEL_LEVEL]} (target 0) {'OK' if ok else 'MISSED'}; detector signals "
        f"{ {d: n for d, n in alarms.items() if d != MODEL_LEVEL} }"
    )
    for name, target in TARGET_DELAY_REQUESTS.items():
        delay = phases[name]["first_alarm_after_requests"]
        model_delay = delay[MODEL_LEVEL]
        ok = model_delay is not None and model_delay <= target
        print(
            f"  {name}: model-level alarm after {model_delay} requests (target <= {target}) "
            f"{'OK' if ok else 'MISSED'}; detector signals after "
            f"{ {d: v for d, v in delay.items() if d != MODEL_LEVEL} }"
        )
    for name, entry in report["estimated_accuracy"].items():
        error = entry["error"]
        verdict = ""
        if name in ("reference", "in-distribution", "recovery"):
            verdict = " OK" if abs(error) <= TARGET_ACCURACY_ERROR else " MISSED"
        print(
            f"  estimated accuracy, {name}: {entry['estimated']:.3f} vs true {entry['true']:.3f} "
            f"(error {error * 100:+.1f} points){verdict}"
        )
    ok = lat["overhead"] <= TARGET_P50_OVERHEAD
    if math.isnan(lat["overhead"]):
        print("  serving p50 on vs off: not measured (--latency-rounds 0)")
    else:
        print(
            f"  serving p50 off {[round(v, 2) for v in lat['p50_ms_off']]} ms, on "
            f"{[round(v, 2) for v in lat['p50_ms_on']]} ms: overhead {lat['overhead'] * 100:+.1f}% "
            f"(median of pair ratios; of medians {lat['overhead_of_medians'] * 100:+.1f}%) "
            f"(target <= {TARGET_P50_OVERHEAD:.0%}) {'OK' if ok else 'MISSED'}"
        )
    print(f"  samples dropped by the drift queue: {report['samples_dropped']}")
    mem = report["memory"]
    total = (mem["server_rss_mib"] or 0) + (mem["worker_rss_mib"] or 0)
    ok = total <= TARGET_MEMORY_MIB
    print(
        f"  memory: server RSS {mem['server_rss_mib']} MiB (peak {mem['server_peak_mib']}), "
        f"drift worker RSS {mem['worker_rss_mib']} MiB (peak {mem['worker_peak_mib']}), "
        f"together {total:.0f} MiB (target <= {TARGET_MEMORY_MIB:.0f}) {'OK' if ok else 'MISSED'}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("--data", type=Path, default=DEFAULT_DATA, help="text,label CSV (BANKING77 train.csv)")
    add("--shots", type=int, default=10, help="seed examples per intent (10)")
    add("--in-distribution", type=int, default=20000, help="in-distribution requests (20000)")
    add("--shift-samples", type=int, default=1200, help="requests per shift phase (1200)")
    add("--recovery-samples", type=int, default=1000, help="in-distribution between shifts")
    add("--mix-intents", type=int, default=8, help="intents in the intent-mix shift (8)")
    add("--latency-rounds", type=int, default=6, help="off/on server pairs for p50 (6)")
    add("--latency-requests", type=int, default=1500, help="measured requests per server")
    add("--latency-warmup", type=int, default=1100, help="warm-up requests per server")
    add("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override model.toml, e.g. drift.ert=2000 (repeatable)")  # fmt: skip
    add("--state-dir", type=Path, help="keep everything here (must be new or empty)")
    add("--json", type=Path, help="write the report here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.data.is_file():
        raise SystemExit(f"no data file {args.data}")
    if args.state_dir is not None:
        if args.state_dir.exists() and any(args.state_dir.iterdir()):
            raise SystemExit(f"--state-dir {args.state_dir} is not empty; give a new directory")
        root, keep = args.state_dir.resolve(), True
    else:
        root, keep = Path(tempfile.mkdtemp(prefix="loopserve-drift-")), False
    try:
        report = run(args, root)
        if args.json is not None:
            args.json.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
        return 0
    finally:
        if keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
