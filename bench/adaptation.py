"""Closed-loop benchmark: labels in, fine-tune job, gate, hot swap, while serving live traffic.

On a labeled ``text,label`` CSV (default: BANKING77 ``train.csv``; a ``category`` column is read
as the label), it measures the whole adaptation loop of a real ``loopserve serve`` subprocess:

1. a fixed split (seed 0): per intent a held-out TEST set that is never posted; the rest is the
   pool that seed data and rounds are drawn from;
2. a scenario: ``new-intents`` (version 1 knows only some intents, the others arrive in labeled
   traffic later; ``allow_new_labels = true``) or ``mix-shift`` (version 1 knows every intent;
   the rounds concentrate on a subset of them);
3. ``loopserve init`` on the seed CSV (timed) and version 1's held-out accuracy;
4. ``loopserve serve`` with a client process sending single-text ModelInfer requests at a fixed
   rate for the whole run (open loop). From each round's idle window on it sends that round's
   texts under their sample ids, so the labels posted next carry the ``prediction_id`` of a
   prediction the serving version made (the server scores these delayed labels per version);
5. per round: the round's samples posted with ``AddSamples`` (``min_new_samples`` = the round
   size, so each round triggers one job), the job followed to its end, seconds from the last label
   posted to the first response from the new version, the gate's scores, held-out accuracy through
   the server split into the scenario's NEW part and the OLD rest, and forgetting (old-part
   accuracy before the round minus after);
6. serving latency (p50/p99) of the traffic while a job runs vs in idle windows with no job.

It prints per-round tables and a summary against the targets: version 1 >= 87 % (10-shot, all
intents), label -> serving <= 60 s for <= 500 new samples, forgetting <= 1 point, p99 during a
job <= 2x idle. Only 127.0.0.1 is used, every wait is bounded, and the server and the traffic
process are always stopped. Usage::

    .venv/bin/python bench/adaptation.py [--data CSV] [--scenario new-intents|mix-shift]
        [--shots 10] [--rounds 2] [--round-size 400] [--json OUT] [--state-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import math
import multiprocessing
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.serving import (  # noqa: E402
    ServerProcess,
    loopserve_command,
    machine_busy_seconds,
    proc_cpu_seconds,
    proc_status_mib,
)

MODEL = "adapt-bench"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "banking77" / "train.csv"
INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
INIT_TIMEOUT_S = 900.0
JOB_APPEAR_TIMEOUT_S = 15.0
EVAL_BATCH = 32
TRAFFIC_MAX_IN_FLIGHT = 64
STATUS_POLL_S = 0.25

TARGET_V1_ACCURACY = 0.87
TARGET_LABEL_TO_SERVING_S = 60.0
TARGET_LABEL_TO_SERVING_SAMPLES = 500
TARGET_FORGETTING_POINTS = 1.0
TARGET_P99_RATIO = 2.0

Row = tuple[str, str]  # (text, label)


# ------------------------------------------------------------------------------------------ data


def read_rows(path: Path) -> list[Row]:
    """``text`` plus ``label`` (or ``category``, as in BANKING77) columns, blank rows skipped."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = set(reader.fieldnames or ())
        column = "label" if "label" in fields else "category" if "category" in fields else None
        if "text" not in fields or column is None:
            raise SystemExit(f"{path}: needs columns text and label (or category)")
        rows = [((r.get("text") or "").strip(), (r.get(column) or "").strip()) for r in reader]
    return [(text, label) for text, label in rows if text and label]


def split_rows(
    rows: list[Row], test_per_intent: int, seed: int
) -> tuple[dict[str, list[Row]], dict[str, list[Row]]]:
    """Per intent (sorted), shuffle with ``seed``: the first min(test_per_intent, n // 3) rows are
    TEST (never posted), the rest the pool."""
    by_label: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_label[row[1]].append(row)
    rng = random.Random(seed)
    test: dict[str, list[Row]] = {}
    pool: dict[str, list[Row]] = {}
    for label in sorted(by_label):
        group = by_label[label][:]
        rng.shuffle(group)
        k = min(test_per_intent, len(group) // 3)
        test[label], pool[label] = group[:k], group[k:]
    return test, pool


class Pool:
    """Rows per label drawn in order without replacement."""

    def __init__(self, rows: dict[str, list[Row]]) -> None:
        self._rows = rows
        self._next = dict.fromkeys(rows, 0)

    def take(self, labels: Sequence[str], count: int) -> list[Row]:
        """Round-robin over ``labels``, one row each pass, until ``count`` rows or none left."""
        taken: list[Row] = []
        while len(taken) < count:
            progressed = False
            for label in labels:
                if len(taken) == count:
                    break
                i = self._next[label]
                if i < len(self._rows[label]):
                    taken.append(self._rows[label][i])
                    self._next[label] = i + 1
                    progressed = True
            if not progressed:
                break
        return taken


@dataclass
class Scenario:
    name: str
    description: str
    seed_rows: list[Row]
    rounds: list[list[Row]]
    test: list[Row]
    focus: list[str]  # the NEW part: new intents, or the shifted intents
    seed_labels: list[str]
    allow_new_labels: bool


def _rounds(
    pool: Pool, focus: list[str], rest: list[str], args: argparse.Namespace
) -> list[list[Row]]:
    """Each round: ``focus_share`` of ``round_size`` from the focus intents, the rest from the others."""
    rounds = []
    focus_count = round(args.round_size * args.focus_share)
    for r in range(args.rounds):
        batch = pool.take(focus, focus_count)
        batch += pool.take(rest, args.round_size - len(batch))
        random.Random(r + 1).shuffle(batch)
        rounds.append(batch)
    return rounds


def build_scenario(rows: list[Row], args: argparse.Namespace) -> Scenario:
    test_by_label, pool_rows = split_rows(rows, args.test_per_intent, seed=0)
    labels = sorted(pool_rows)
    rng = random.Random(0)
    pool = Pool(pool_rows)
    test = [row for label in labels for row in test_by_label[label]]
    if args.scenario == "new-intents":
        old_count = min(args.old_intents, len(labels) - 1)
        seed_labels = sorted(rng.sample(labels, old_count))
        focus = [label for label in labels if label not in set(seed_labels)]
        seed_rows: list[Row] = []
        for label in seed_labels:
            seed_rows += pool.take([label], args.shots)
        rounds = _rounds(pool, focus, seed_labels, args)
        description = (
            f"new-intents: version 1 knows {len(seed_labels)} of {len(labels)} intents "
            f"({args.shots} shots each, seeded random choice); the other {len(focus)} arrive in "
            f"the rounds ({args.focus_share:.0%} of each round), mixed with old-intent samples"
        )
        return Scenario(
            "new-intents", description, seed_rows, rounds, test, focus, seed_labels, True
        )
    focus = sorted(rng.sample(labels, min(args.shift_intents, len(labels) - 1)))
    others = [label for label in labels if label not in set(focus)]
    seed_rows = []
    for label in labels:
        seed_rows += pool.take([label], args.shots)
    rounds = _rounds(pool, focus, others, args)
    description = (
        f"mix-shift: version 1 knows all {len(labels)} intents ({args.shots} shots each); "
        f"{args.focus_share:.0%} of each round comes from {len(focus)} intents (seeded random "
        "choice), the rest from the others"
    )
    return Scenario("mix-shift", description, seed_rows, rounds, test, focus, labels, False)


def write_csv(path: Path, rows: list[Row]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


# ------------------------------------------------------------------------------------ model.toml


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON escapes are valid TOML escapes
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise ValueError(f"cannot write {value!r} as TOML")


def edit_model_toml(path: Path, overrides: dict[str, dict[str, Any]]) -> None:
    """Merge ``{section: {key: value}}`` into model.toml (rewritten; comments are dropped)."""
    document = tomllib.loads(path.read_text(encoding="utf-8"))
    for section, values in overrides.items():
        document.setdefault(section, {}).update(values)
    lines = ["# Written by a benchmark: the model's definition plus overrides."]
    for section, table in document.items():
        lines.append(f"\n[{section}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in table.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def parse_set(items: list[str]) -> dict[str, dict[str, Any]]:
    """``section.key=value`` (value in TOML syntax; a bare word is a string)."""
    overrides: dict[str, dict[str, Any]] = defaultdict(dict)
    for item in items:
        key, sep, raw = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise SystemExit(f"--set {item!r}: expected section.key=value")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        overrides[section][name] = value
    return overrides


# ----------------------------------------------------------------------------------------- server


def swap_seconds(log_path: Path, model: str) -> dict[int, float]:
    """Seconds each version took to load and warm before it served, from the server log."""
    pattern = re.compile(rf"model {re.escape(model)} now serving version (\d+) .*after ([0-9.]+)s")
    text = log_path.read_text(encoding="utf-8", errors="replace")
    return {int(v): float(s) for v, s in pattern.findall(text)}


def scrape_online_accuracy(metrics_port: int, model: str) -> dict[str, dict[str, float]]:
    """Delayed-label scores per version: labeled predictions, correct ones, accuracy."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode("utf-8")
    names = {
        "loopserve_online_labeled_predictions_total": "labeled",
        "loopserve_online_correct_predictions_total": "correct",
        "loopserve_online_accuracy": "accuracy",
    }
    sample = re.compile(r'^(\w+)\{model="([^"]*)",version="([^"]*)"\} ([0-9.eE+-]+|NaN)$', re.M)
    found: dict[str, dict[str, float]] = defaultdict(dict)
    for name, m, version, value in sample.findall(text):
        if name in names and m == model:
            found[version][names[name]] = float(value)
    return dict(found)


# ---------------------------------------------------------------------------------------- traffic


def _encode(model: str, texts: Sequence[str], request_id: str = "") -> bytes:
    from service.api._proto.inference import grpc_predict_v2_pb2 as pb

    request = pb.ModelInferRequest(model_name=model, id=request_id)
    request.inputs.add(name="text", datatype="BYTES", shape=[len(texts)])
    data = [t.encode("utf-8") for t in texts]
    request.raw_input_contents.append(b"".join(struct.pack("<I", len(d)) + d for d in data))
    return bytes(request.SerializeToString())


def _decode_labels(raw: bytes) -> tuple[list[str], str]:
    """Predicted labels and the version that answered."""
    from service.api._proto.inference import grpc_predict_v2_pb2 as pb

    response = pb.ModelInferResponse.FromString(raw)
    index = next(i for i, t in enumerate(response.outputs) if t.name == "label")
    blob, labels, offset = response.raw_output_contents[index], [], 0
    while offset < len(blob):
        (n,) = struct.unpack_from("<I", blob, offset)
        labels.append(blob[offset + 4 : offset + 4 + n].decode("utf-8"))
        offset += 4 + n
    return labels, response.model_version


async def _traffic(
    address: str,
    model: str,
    plan: list[list[list[str]]],
    rate: float,
    max_s: float,
    control: dict[str, Any],
) -> dict[str, Any]:
    """Open-loop ModelInfer at ``rate``/s. Texts come from ``plan[phase]`` (the current round's
    samples, ``control["phase"]`` set by the bench), in order, then again with ``~k`` ids."""
    import grpc
    from grpc import aio

    stop, phase, done = control["stop"], control["phase"], control["done"]
    records: list[tuple[float, float, bool, int, str]] = []
    sent = [0] * len(plan)
    answered = [bytearray(len(texts)) for texts in plan]
    prefix = [0] * len(plan)
    skipped = 0

    async def one(call: Any, p: int, j: int) -> None:
        k, n = divmod(j, len(plan[p]))
        request_id, text = plan[p][n]
        request = _encode(model, [text], request_id if k == 0 else f"{request_id}~{k}")
        wall, t0 = time.time(), time.perf_counter()
        ok, version, code = False, -1, "OK"
        try:
            _labels, answered_by = _decode_labels(await call(request, timeout=10.0))
            ok, version = True, int(answered_by or -1)
        except grpc.RpcError as exc:
            code = exc.code().name if isinstance(exc, aio.AioRpcError) else type(exc).__name__
        records.append((wall, time.perf_counter() - t0, ok, version, code))
        if k == 0:
            answered[p][n] = 1
            while prefix[p] < len(answered[p]) and answered[p][prefix[p]]:
                prefix[p] += 1
        done.value = prefix[min(max(phase.value, 0), len(plan) - 1)]

    async with aio.insecure_channel(address) as channel:
        call = channel.unary_unary(INFER_METHOD)
        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter()
        i = 0
        while not stop.is_set() and time.perf_counter() - start < max_s:
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(tasks) >= TRAFFIC_MAX_IN_FLIGHT:
                skipped += 1
            else:
                p = min(max(phase.value, 0), len(plan) - 1)
                task = asyncio.create_task(one(call, p, sent[p]))
                sent[p] += 1
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            i += 1
        if tasks:
            await asyncio.wait(tasks, timeout=15.0)
    return {"records": records, "skipped": skipped, "scheduled": i}


def traffic_main(
    address: str, model: str, plan_file: str, rate: float, max_s: float, control: dict[str, Any]
) -> None:
    """Spawned process: ModelInfer at ``rate``/s until ``control["stop"]`` is set; results go
    into ``control["out"]`` (a file: a large result through a pipe could block the exit)."""
    try:
        plan = json.loads(Path(plan_file).read_text(encoding="utf-8"))
        result = asyncio.run(_traffic(address, model, plan, rate, max_s, control))
    except BaseException as exc:
        result = {"error": f"{type(exc).__name__}: {exc}"}
    Path(control["out"]).write_text(json.dumps(result), encoding="utf-8")


@dataclass
class Latency:
    n: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int


def latency_in(records: list[list[Any]], windows: list[tuple[float, float]]) -> Latency:
    """Traffic requests sent inside any of ``windows`` (wall-clock seconds)."""
    chosen = [r for r in records if any(a <= r[0] < b for a, b in windows)]
    ms = np.asarray([r[1] for r in chosen if r[2]], dtype=np.float64) * 1000.0
    if not ms.size:
        return Latency(len(chosen), math.nan, math.nan, math.nan, len(chosen))
    p50, p99 = (float(np.percentile(ms, q)) for q in (50, 99))
    return Latency(len(chosen), p50, p99, float(ms.max()), sum(1 for r in chosen if not r[2]))


# ------------------------------------------------------------------------------------- evaluation


@dataclass
class Accuracy:
    version: str
    new: float
    old: float
    all: float
    n_new: int
    n_old: int
    seconds: float
    window: tuple[float, float]


def evaluate(call: Any, test: list[Row], focus: set[str]) -> Accuracy:
    """Held-out accuracy through the server, in batches of EVAL_BATCH texts."""
    started, t0 = time.time(), time.perf_counter()
    correct: list[bool] = []
    versions: set[str] = set()
    for i in range(0, len(test), EVAL_BATCH):
        batch = test[i : i + EVAL_BATCH]
        labels, version = _decode_labels(call(_encode(MODEL, [t for t, _ in batch]), timeout=60))
        versions.add(version)
        correct += [p == gold for p, (_, gold) in zip(labels, batch, strict=True)]
    is_new = [label in focus for _, label in test]
    new = [c for c, f in zip(correct, is_new, strict=True) if f]
    old = [c for c, f in zip(correct, is_new, strict=True) if not f]
    return Accuracy(
        version=",".join(sorted(versions)),
        new=float(np.mean(new)) if new else math.nan,
        old=float(np.mean(old)) if old else math.nan,
        all=float(np.mean(correct)),
        n_new=len(new),
        n_old=len(old),
        seconds=time.perf_counter() - t0,
        window=(started, time.time()),
    )


def evaluate_candidate(state_dir: Path, version: int, test: list[Row], focus: set[str]) -> Accuracy:
    """Held-out accuracy of a published version in this process (a rejected candidate is never
    served), with the server's loading path: registry -> LoadedVersion on its serving file."""
    from service import tasks
    from service.registry import ModelRegistry
    from service.runtime import SessionOptions

    started, t0 = time.time(), time.perf_counter()
    info = ModelRegistry(state_dir, MODEL).get(version)
    loaded = tasks.open_version(MODEL, info, SessionOptions(thread_spinning=False))
    correct: list[bool] = []
    for i in range(0, len(test), EVAL_BATCH):
        batch = test[i : i + EVAL_BATCH]
        winners = loaded.predict([t for t, _ in batch]).probabilities.argmax(axis=1)
        correct += [info.labels[w] == gold for w, (_, gold) in zip(winners, batch, strict=True)]
    is_new = [label in focus for _, label in test]
    new = [c for c, f in zip(correct, is_new, strict=True) if f]
    old = [c for c, f in zip(correct, is_new, strict=True) if not f]
    return Accuracy(
        version=f"{version}*",
        new=float(np.mean(new)) if new else math.nan,
        old=float(np.mean(old)) if old else math.nan,
        all=float(np.mean(correct)),
        n_new=len(new),
        n_old=len(old),
        seconds=time.perf_counter() - t0,
        window=(started, time.time()),
    )


# ------------------------------------------------------------------------------------------ rounds


@dataclass
class JobReport:
    id: str
    trigger: str
    state: str
    attempt: int
    error: str
    created: float
    started: float | None
    finished: float | None
    candidate_version: int | None
    gate: dict[str, Any] | None
    result: dict[str, Any] = field(default_factory=dict)  # result.json, less the spec echo
    log_tail: str = ""

    @property
    def wall_s(self) -> float:
        if self.started is None or self.finished is None:
            return math.nan
        return self.finished - self.started


@dataclass
class RoundReport:
    round: int
    samples: int
    focus_samples: int
    with_prediction_id: int
    accepted: int
    post_seconds: float
    idle_window: tuple[float, float]
    idle_other_cpus: float  # CPUs busy outside server, traffic and bench in the idle window
    last_post: float
    jobs: list[JobReport]
    serving_before: int
    serving_after: int
    status_swap_s: float  # last label posted -> model_status shows the new version
    traffic_swap_s: float = math.nan  # last label posted -> first traffic answer from it
    swap_load_s: float = math.nan
    accuracy: Accuracy | None = None
    forgetting_points: float = math.nan
    candidate: Accuracy | None = None  # a rejected candidate, scored in-process (never served)
    candidate_forgetting_points: float = math.nan
    idle: Latency | None = None
    during_job: Latency | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def job(self) -> JobReport | None:
        return self.jobs[-1] if self.jobs else None


def job_report(job: Any, state_dir: Path) -> JobReport:
    job_dir = state_dir / "jobs" / job.id
    result: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        result = json.loads((job_dir / "result.json").read_text(encoding="utf-8"))
    result.pop("traceback", None)
    log_tail = ""
    with contextlib.suppress(OSError):
        lines = (job_dir / "job.log").read_text(encoding="utf-8", errors="replace").splitlines()
        log_tail = "\n".join(lines[-15:])
    return JobReport(
        id=job.id,
        trigger=job.trigger,
        state=job.state.value,
        attempt=job.attempt,
        error=job.error,
        created=job.created,
        started=job.started,
        finished=job.finished,
        candidate_version=job.candidate_version,
        gate=asdict(job.gate) if job.gate is not None else None,
        result=result,
        log_tail=log_tail,
    )


def _cpu_of(pids: list[int]) -> float:
    """CPU-seconds of ``pids`` (server, traffic) and of this process."""
    total = time.process_time()
    for pid in pids:
        with contextlib.suppress(OSError):
            total += proc_cpu_seconds(pid)
    return total


def run_round(
    number: int,
    samples: list[Row],
    scenario: Scenario,
    adapt: Any,
    control: dict[str, Any],
    args: argparse.Namespace,
    state_dir: Path,
    max_retries: int,
    known_jobs: set[str],
) -> RoundReport:
    from service.domain.loop import JobState, NewSample

    # Traffic now sends this round's texts, so the labels below follow served predictions.
    if control["phase"].value != number - 1:
        control["done"].value = 0
        control["phase"].value = number - 1
    idle_start = time.time()
    print(f"[round {number}] idle traffic for {args.idle_seconds:.0f}s ...", flush=True)
    busy0, ours0 = machine_busy_seconds(), _cpu_of(control["pids"])
    time.sleep(args.idle_seconds)
    idle_window = (idle_start, time.time())
    other = machine_busy_seconds() - busy0 - (_cpu_of(control["pids"]) - ours0)
    idle_other = max(0.0, other) / (idle_window[1] - idle_window[0])
    before = adapt.model_status(MODEL).serving_version

    focus = set(scenario.focus)
    answered = int(control["done"].value)
    posted = [
        NewSample(
            text=text,
            label=label,
            id=f"r{number}-{i:04d}",
            prediction_id=f"r{number}-{i:04d}" if i < answered else "",
        )
        for i, (text, label) in enumerate(samples)
    ]
    t0 = time.perf_counter()
    accepted = 0
    for i in range(0, len(posted), args.post_batch):
        accepted += adapt.add_samples(MODEL, posted[i : i + args.post_batch]).accepted
    last_post = time.time()
    report = RoundReport(
        round=number,
        samples=len(samples),
        focus_samples=sum(1 for _, label in samples if label in focus),
        with_prediction_id=sum(1 for s in posted if s.prediction_id),
        accepted=accepted,
        post_seconds=time.perf_counter() - t0,
        idle_window=idle_window,
        idle_other_cpus=idle_other,
        last_post=last_post,
        jobs=[],
        serving_before=before,
        serving_after=before,
        status_swap_s=math.nan,
    )
    print(
        f"[round {number}] posted {accepted} samples ({report.focus_samples} in the NEW part, "
        f"{report.with_prediction_id} with prediction_id) in {report.post_seconds:.1f}s",
        flush=True,
    )

    # The job starts inside the last AddSamples call; start one by hand only if none did.
    deadline = time.time() + JOB_APPEAR_TIMEOUT_S
    status = adapt.model_status(MODEL)
    while (status.job is None or status.job.id in known_jobs) and time.time() < deadline:
        time.sleep(STATUS_POLL_S)
        status = adapt.model_status(MODEL)
    if status.job is None or status.job.id in known_jobs:
        report.notes.append("no job started by itself; started one with StartFineTune")
        adapt.start_fine_tune(MODEL, f"bench round {number}: no automatic job")
        status = adapt.model_status(MODEL)

    seen: dict[str, Any] = {}
    deadline = time.time() + args.job_timeout
    while time.time() < deadline:
        if status.serving_version != before and math.isnan(report.status_swap_s):
            report.status_swap_s = time.time() - last_post
        job = status.job
        if job is not None and job.id not in known_jobs:
            seen[job.id] = job
            retry_due = job.state is JobState.FAILED and job.attempt <= max_retries
            if job.state.finished and not retry_due:
                break
        time.sleep(STATUS_POLL_S)
        status = adapt.model_status(MODEL)
    else:
        report.notes.append(f"job not finished after {args.job_timeout:.0f}s")
    known_jobs.update(seen)
    report.jobs = [job_report(adapt.get_job(job_id), state_dir) for job_id in seen]
    report.serving_after = adapt.model_status(MODEL).serving_version
    job_r = report.job
    if job_r is not None:
        print(
            f"[round {number}] job {job_r.id} {job_r.state} after {job_r.wall_s:.1f}s; serving "
            f"version {report.serving_after}"
            + (
                f" (label -> status {report.status_swap_s:.1f}s)"
                if report.serving_after != report.serving_before
                else ""
            ),
            flush=True,
        )
    return report


# --------------------------------------------------------------------------------------- reporting


def _f(value: float | None, spec: str = ".1f") -> str:
    if value is None or value != value:
        return "-"
    return format(value, spec)


def _pct(value: float | None) -> str:
    return "-" if value is None or value != value else f"{100 * value:.1f}"


def _check(ok: bool | None) -> str:
    return "n/a" if ok is None else "ok" if ok else "MISS"


def print_report(report: dict[str, Any], rounds: list[RoundReport], v1: Accuracy) -> None:
    print()
    print(f"== scenario: {report['scenario']}")
    print(f"  {report['description']}")
    for key in (
        "data",
        "split",
        "seed_rows",
        "init_s",
        "v1_validation",
        "traffic",
        "overrides",
        "load_before",
        "load_after",
    ):
        print(f"  {key:<14} {report[key]}")

    print()
    print("== accuracy on held-out TEST rows, through the server (%)")
    print(f"  NEW part = {report['new_part']}; OLD part = the other intents")
    header = (
        f"  {'round':<7}{'version':>8}{'new':>8}{'old':>8}{'all':>8}{'forgetting pts':>16}"
        f"{'eval s':>8}"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    rows: list[tuple[str, Accuracy, float]] = [("0", v1, math.nan)]
    for r in rounds:
        if r.candidate is not None:
            rows.append((f"{r.round} cand", r.candidate, r.candidate_forgetting_points))
        if r.accuracy is not None:
            rows.append((str(r.round), r.accuracy, r.forgetting_points))
    for number, acc, forgetting in rows:
        print(
            f"  {number:<7}{acc.version:>8}{_pct(acc.new):>8}{_pct(acc.old):>8}{_pct(acc.all):>8}"
            f"{_f(forgetting, '+.2f'):>16}{acc.seconds:>8.1f}"
        )
    print(f"  ({v1.n_new} NEW and {v1.n_old} OLD test rows; forgetting = old before - old after)")
    if any(r.candidate is not None for r in rounds):
        print(
            "  N* / 'cand' = a candidate the gate rejected, scored in this process after the run\n"
            "  (never served); its forgetting is against the version serving before its round."
        )

    print()
    print("== loop per round")
    header = (
        f"  {'round':<6}{'samples':>8}{'new':>5}{'pred id':>8}{'job':>10}{'trigger':>9}"
        f"{'gate new c/i':>14}{'gate anchor c/i':>17}{'n new/anchor':>14}"
        f"{'label->serving s':>18}{'status s':>10}"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    for r in rounds:
        job = r.job
        gate = job.gate if job is not None else None
        new = anchor = sizes = "-"
        if gate is not None:
            new = f"{_pct(gate['candidate_new'])}/{_pct(gate['incumbent_new'])}"
            anchor = f"{_pct(gate['candidate_anchor'])}/{_pct(gate['incumbent_anchor'])}"
            sizes = f"{gate['new_examples']}/{gate['anchor_examples']}"
        print(
            f"  {r.round:<6}{r.samples:>8}{r.focus_samples:>5}{r.with_prediction_id:>8}"
            f"{job.state if job else 'none':>10}{job.trigger if job else '-':>9}{new:>14}"
            f"{anchor:>17}{sizes:>14}{_f(r.traffic_swap_s):>18}{_f(r.status_swap_s):>10}"
        )
        for extra in r.jobs[:-1]:
            print(f"  {'':<6}earlier attempt {extra.id}: {extra.state} {extra.error}")
        if gate is not None:
            print(f"  {'':<6}gate: {gate['reason']}")
        for note in r.notes:
            print(f"  {'':<6}NOTE: {note}")
    print(
        "  new = samples in the NEW part; pred id = labels posted with the prediction_id of a\n"
        "  served prediction; gate c/i = candidate/incumbent accuracy (%) on the job's holdout of\n"
        "  new samples and on its anchor of older ones; label->serving = last label posted to the\n"
        "  first traffic response from the new version; status = the same seen by polling status."
    )

    print()
    print("== job phases (seconds)")
    header = (
        f"  {'round':<6}{'job':<12}{'queued':>8}{'job wall':>10}{'in process':>12}{'training':>10}"
        f"{'other in proc':>15}{'spawn+imports+publish':>23}{'swap load':>11}{'train/val':>11}"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    for r in rounds:
        for job in r.jobs:
            res = job.result
            in_proc = float(res.get("seconds", math.nan))
            train = float(res.get("train", {}).get("seconds", math.nan))
            swap = r.swap_load_s if job is r.job and job.state == "promoted" else 0.0
            queued = (job.started - job.created) if job.started is not None else math.nan
            data = res.get("data", {})
            sizes = f"{data.get('train', '-')}/{data.get('validation', '-')}"
            print(
                f"  {r.round:<6}{job.id[:11]:<12}{_f(queued):>8}{_f(job.wall_s):>10}"
                f"{_f(in_proc):>12}{_f(train):>10}{_f(in_proc - train):>15}"
                f"{_f(job.wall_s - in_proc - swap):>23}{_f(swap, '.2f'):>11}{sizes:>11}"
            )
            finetuned = res.get("train", {}).get("finetuned") or {}
            if finetuned:
                brief = {k: v for k, v in finetuned.items() if not isinstance(v, list | dict)}
                print(f"  {'':<6}fine-tune: {brief}")
            if job.state != "promoted" or job.wall_s > TARGET_LABEL_TO_SERVING_S:
                if job.log_tail:
                    print(f"  {'':<6}job.log tail:\n" + _indent(job.log_tail, 8))
                else:
                    print(f"  {'':<6}job.log is empty (the job process logs no phases)")
    print(
        "  job wall = started -> finished as the server records it; in process = the job's own\n"
        "  timer (after its imports): training + other (tokenize, grow head, ONNX export, parity,\n"
        "  gate scoring); the rest is process start, imports, publishing and the swap."
    )

    print()
    print("== serving latency of the traffic (ms): idle windows vs while a job runs")
    header = (
        f"  {'round':<6}{'idle n':>7}{'idle p50':>10}{'idle p99':>10}{'job n':>7}{'job p50':>9}"
        f"{'job p99':>9}{'job max':>9}{'p99 ratio':>11}{'errors':>8}{'idle other':>12}"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    for r in rounds:
        idle, busy = r.idle, r.during_job
        if idle is None or busy is None:
            continue
        print(
            f"  {r.round:<6}{idle.n:>7}{_f(idle.p50_ms, '.2f'):>10}{_f(idle.p99_ms, '.2f'):>10}"
            f"{busy.n:>7}{_f(busy.p50_ms, '.2f'):>9}{_f(busy.p99_ms, '.2f'):>9}"
            f"{_f(busy.max_ms, '.1f'):>9}{_f(busy.p99_ms / idle.p99_ms, '.2f'):>11}"
            f"{idle.errors + busy.errors:>8}{_f(r.idle_other_cpus, '.2f'):>12}"
        )
    total_idle, total_busy = report["latency"]["idle"], report["latency"]["during_job"]
    print(
        f"  {'all':<6}{total_idle['n']:>7}{_f(total_idle['p50_ms'], '.2f'):>10}"
        f"{_f(total_idle['p99_ms'], '.2f'):>10}{total_busy['n']:>7}"
        f"{_f(total_busy['p50_ms'], '.2f'):>9}{_f(total_busy['p99_ms'], '.2f'):>9}"
        f"{_f(total_busy['max_ms'], '.1f'):>9}{_f(report['latency']['p99_ratio'], '.2f'):>11}"
        f"{total_idle['errors'] + total_busy['errors']:>8}"
    )
    t = report["traffic_totals"]
    print(
        "  idle other = CPUs busy outside the server, the traffic and the bench during the idle\n"
        "  window (other processes, steal): above ~0.1 the idle baseline is disturbed.\n"
        f"  traffic: {t['sent']} requests at {report['traffic']}, {t['errors']} errors "
        f"{t['error_codes']}, {t['skipped']} skipped (over {TRAFFIC_MAX_IN_FLIGHT} in flight); "
        f"server RSS {report['server_rss_mib']}"
    )
    if report["online"]:
        online = ", ".join(
            f"v{v}: {_pct(s.get('accuracy'))}% of {int(s.get('labeled', 0))}"
            for v, s in sorted(report["online"].items())
        )
        print(f"  delayed-label accuracy of served predictions (by version): {online}")

    print()
    print("== summary vs targets")
    for line in report["summary"]:
        print(f"  {line}")
    print(f"  total bench time {report['total_s']:.1f}s")


def _indent(text: str, n: int) -> str:
    return "\n".join(" " * n + line for line in text.splitlines())


def summary_lines(
    scenario: Scenario, v1: Accuracy, rounds: list[RoundReport], p99_ratio: float
) -> list[str]:
    lines = []
    if scenario.name == "mix-shift":
        ok = v1.all >= TARGET_V1_ACCURACY
        lines.append(
            f"v1 accuracy (all {len(scenario.seed_labels)} intents, {len(scenario.seed_rows)} "
            f"seed rows): {_pct(v1.all)}% (target >= {TARGET_V1_ACCURACY:.0%}) {_check(ok)}"
        )
    else:
        lines.append(
            f"v1 accuracy on its {len(scenario.seed_labels)} seed intents: {_pct(v1.old)}% "
            f"(target >= {TARGET_V1_ACCURACY:.0%} is for all intents, 10-shot: run "
            f"--scenario mix-shift; {_check(v1.old >= TARGET_V1_ACCURACY)} as an indication)"
        )
    for r in rounds:
        job = r.job
        state = job.state if job else "none"
        swap_ok: bool | None = None
        if r.samples <= TARGET_LABEL_TO_SERVING_SAMPLES and not math.isnan(r.traffic_swap_s):
            swap_ok = r.traffic_swap_s <= TARGET_LABEL_TO_SERVING_S
        forgetting_ok = (
            None
            if math.isnan(r.forgetting_points)
            else r.forgetting_points <= TARGET_FORGETTING_POINTS + 1e-9
        )
        ratio = math.nan
        if r.idle is not None and r.during_job is not None:
            ratio = r.during_job.p99_ms / r.idle.p99_ms
        ratio_ok = None if math.isnan(ratio) else ratio <= TARGET_P99_RATIO
        acc = r.accuracy
        lines.append(
            f"round {r.round}: job {state}; label->serving "
            + (
                f"{_f(r.traffic_swap_s)}s for {r.samples} samples "
                f"(<= {TARGET_LABEL_TO_SERVING_S:.0f}s) {_check(swap_ok)}; "
                if r.serving_after != r.serving_before
                else "n/a (no new version); "
            )
            + f"forgetting {_f(r.forgetting_points, '+.2f')} pts (<= {TARGET_FORGETTING_POINTS}) "
            f"{_check(forgetting_ok)}; p99 job/idle {_f(ratio, '.2f')} (<= {TARGET_P99_RATIO}) "
            f"{_check(ratio_ok)}; NEW part {_pct(acc.new if acc else None)}%"
        )
        if r.candidate is not None:
            lines.append(
                f"  rejected candidate v{r.candidate.version.rstrip('*')} on TEST: NEW part "
                f"{_pct(r.candidate.new)}%, all {_pct(r.candidate.all)}%, forgetting "
                f"{_f(r.candidate_forgetting_points, '+.2f')} pts"
            )
    lines.append(
        f"p99 during jobs / idle, all rounds: {_f(p99_ratio, '.2f')} "
        f"(<= {TARGET_P99_RATIO}) {_check(None if math.isnan(p99_ratio) else p99_ratio <= TARGET_P99_RATIO)}"
    )
    return lines


def _no_nan(value: Any) -> Any:
    """``value`` with NaN and infinities as None, so the JSON is strict."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_no_nan(v) for v in value]
    return value


def loadavg() -> str:
    with open("/proc/loadavg", encoding="ascii") as handle:
        return " ".join(handle.read().split()[:3]) + f" ({multiprocessing.cpu_count()} CPUs)"


# ------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("--data", type=Path, default=DEFAULT_DATA, help="text,label CSV (default BANKING77 train)")
    add("--scenario", choices=("new-intents", "mix-shift"), default="new-intents")
    add("--shots", type=int, default=10, help="seed examples per seed intent (default 10)")
    add("--rounds", type=int, default=2, help="adaptation rounds (default 2)")
    add("--round-size", type=int, default=400, help="labeled samples per round (default 400)")
    add("--test-per-intent", type=int, default=25, help="held-out rows per intent (default 25)")
    add("--old-intents", type=int, default=60, help="new-intents: intents in the seed (60)")
    add("--shift-intents", type=int, default=20, help="mix-shift: intents the rounds favour (20)")
    add(
        "--focus-share",
        type=float,
        default=None,
        help="share of a round from the NEW part (default 0.5 new-intents, 0.8 mix-shift)",
    )
    add("--rate", type=float, default=20.0, help="traffic requests per second (default 20)")
    add("--idle-seconds", type=float, default=20.0, help="idle traffic before each round (20)")
    add("--post-batch", type=int, default=100, help="samples per AddSamples call (default 100)")
    add("--job-timeout", type=float, default=300.0, help="seconds to wait per round's job (300)")
    add("--max-minutes", type=float, default=15.0, help="skip rounds beyond this budget (15)")
    add(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="model.toml override after init, e.g. --set serving.thread_spinning=false (repeatable)",
    )
    add("--state-dir", type=Path, help="state dir to create and keep (default: a temp dir)")
    add("--json", type=Path, help="also write every number as JSON here")
    args = parser.parse_args(argv)
    if args.focus_share is None:
        args.focus_share = 0.5 if args.scenario == "new-intents" else 0.8
    if not 0 <= args.focus_share <= 1 or args.shots < 1 or args.rounds < 0:
        parser.error("--focus-share must be in [0, 1], --shots >= 1, --rounds >= 0")
    if args.round_size < 1 or args.rate <= 0 or args.post_batch < 1:
        parser.error("--round-size, --rate and --post-batch must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    load_before = loadavg()
    if not args.data.is_file():
        raise SystemExit(f"no data file {args.data}")
    scenario = build_scenario(read_rows(args.data), args)
    print(scenario.description, flush=True)
    for r, samples in enumerate(scenario.rounds, start=1):
        if len(samples) < args.round_size:
            print(f"WARNING: round {r} has only {len(samples)} samples left in the pool")

    if args.state_dir is not None:
        if args.state_dir.exists() and any(args.state_dir.iterdir()):
            raise SystemExit(f"--state-dir {args.state_dir} is not empty; give a new directory")
        root, keep = args.state_dir.resolve(), True
    else:
        root, keep = Path(tempfile.mkdtemp(prefix="loopserve-adapt-")), False
    state_dir, bench_dir = root, root / "bench"
    models_dir = bench_dir / "models"
    bench_dir.mkdir(parents=True, exist_ok=True)
    try:
        return run(args, scenario, state_dir, bench_dir, models_dir, started, load_before)
    finally:
        if keep:
            print(f"kept {root} (state; bench files, model definition and logs under bench/)")
        else:
            shutil.rmtree(root, ignore_errors=True)


def run(
    args: argparse.Namespace,
    scenario: Scenario,
    state_dir: Path,
    bench_dir: Path,
    models_dir: Path,
    started: float,
    load_before: str,
) -> int:
    import grpc

    from service.api.adaptation_client import AdaptationClient
    from service.config import load_model_definition

    seed_csv = bench_dir / "seed.csv"
    write_csv(seed_csv, scenario.seed_rows)
    print(f"loopserve init {MODEL} on {len(scenario.seed_rows)} seed rows ...", flush=True)
    t0 = time.perf_counter()
    init_log = bench_dir / "init.log"
    with init_log.open("wb") as log:
        cmd = [*loopserve_command(), "init", MODEL, "--data", str(seed_csv)]
        cmd += ["--models-dir", str(models_dir), "--state-dir", str(state_dir)]
        code = subprocess.run(
            cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, timeout=INIT_TIMEOUT_S
        ).returncode
    init_s = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"loopserve init failed ({code}):\n{init_log.read_text()[-3000:]}")
    v1_meta = json.loads(
        (state_dir / "models" / MODEL / "versions" / "1" / "meta.json").read_text(encoding="utf-8")
    )
    print(f"  built version 1 in {init_s:.1f}s", flush=True)

    overrides: dict[str, dict[str, Any]] = {
        "adaptation": {
            "allow_new_labels": scenario.allow_new_labels,
            "min_new_samples": args.round_size,
            # A rejected round must not hold the next one off for the default 300 s.
            "backoff_seconds": 0.0,
        }
    }
    for section, values in parse_set(args.set).items():
        overrides.setdefault(section, {}).update(values)
    edit_model_toml(models_dir / MODEL / "model.toml", overrides)
    definition = load_model_definition(models_dir, MODEL)  # validates the edited file

    # Per round, traffic sends the round's texts in posting order under their sample ids.
    plan = [
        [[f"r{r}-{i:04d}", text] for i, (text, _) in enumerate(rows)]
        for r, rows in enumerate(scenario.rounds, start=1)
        if rows
    ] or [[[f"t-{i:04d}", text] for i, (text, _) in enumerate(scenario.test)]]
    plan_file, traffic_file = bench_dir / "traffic-plan.json", bench_dir / "traffic.json"
    plan_file.write_text(json.dumps(plan), encoding="utf-8")
    budget_s = args.max_minutes * 60.0

    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    control = {
        "stop": stop,
        "phase": ctx.Value("i", 0),
        "done": ctx.Value("i", 0),
        "out": str(traffic_file),
    }
    server = ServerProcess(state_dir, models_dir, bench_dir / "server.log", model=MODEL)
    traffic: Any = None
    rounds: list[RoundReport] = []
    online: dict[str, dict[str, float]] = {}
    rss = "-"
    try:
        ready_s = server.wait_ready()
        print(f"server ready in {ready_s:.2f}s on {server.address}", flush=True)
        traffic = ctx.Process(
            target=traffic_main,
            args=(server.address, MODEL, str(plan_file), args.rate, budget_s + 120.0, control),
            name="adapt-traffic",
        )
        traffic.start()
        control["pids"] = [server.proc.pid, traffic.pid]
        with (
            grpc.insecure_channel(server.address) as channel,
            AdaptationClient(server.address, timeout=30.0) as adapt,
        ):
            call = channel.unary_unary(INFER_METHOD)
            focus = set(scenario.focus)
            v1 = evaluate(call, scenario.test, focus)
            print(
                f"version 1 held-out accuracy: new {_pct(v1.new)}%, old {_pct(v1.old)}%, "
                f"all {_pct(v1.all)}% ({v1.seconds:.1f}s)",
                flush=True,
            )
            previous = v1
            known_jobs: set[str] = set()
            for number, samples in enumerate(scenario.rounds, start=1):
                if time.perf_counter() - started > budget_s:
                    print(f"time budget of {args.max_minutes} min spent: skipping round {number}")
                    break
                result = run_round(
                    number,
                    samples,
                    scenario,
                    adapt,
                    control,
                    args,
                    state_dir,
                    definition.adaptation.max_retries,
                    known_jobs,
                )
                result.accuracy = evaluate(call, scenario.test, focus)
                result.forgetting_points = 100.0 * (previous.old - result.accuracy.old)
                print(
                    f"[round {number}] accuracy new {_pct(result.accuracy.new)}%, old "
                    f"{_pct(result.accuracy.old)}%, all {_pct(result.accuracy.all)}%, forgetting "
                    f"{result.forgetting_points:+.2f} pts (served by v{result.accuracy.version})",
                    flush=True,
                )
                previous = result.accuracy
                rounds.append(result)
            online = scrape_online_accuracy(server.metrics_port, MODEL)
            rss = (
                f"{proc_status_mib(server.proc.pid, 'VmRSS'):.0f} MiB "
                f"(peak {proc_status_mib(server.proc.pid, 'VmHWM'):.0f} MiB)"
            )
            versions = adapt.list_versions(MODEL)
    finally:
        stop.set()
        if traffic is not None:
            traffic.join(timeout=30)
            if traffic.is_alive():
                traffic.terminate()
                traffic.join(timeout=10)
        server.stop()

    # What the gate turned down: score rejected candidates on the same TEST rows, in-process.
    before_old = v1.old
    for r in rounds:
        job = r.job
        if job is not None and job.state == "rejected" and job.candidate_version is not None:
            r.candidate = evaluate_candidate(state_dir, job.candidate_version, scenario.test, focus)
            r.candidate_forgetting_points = 100.0 * (before_old - r.candidate.old)
        if r.accuracy is not None:
            before_old = r.accuracy.old

    traffic_result = json.loads(traffic_file.read_text(encoding="utf-8"))
    if "error" in traffic_result:
        raise SystemExit(f"traffic process failed: {traffic_result['error']}")
    records: list[list[Any]] = traffic_result["records"]
    swaps = swap_seconds(server.log_path, MODEL)
    job_windows: list[tuple[float, float]] = []
    for r in rounds:
        windows = [(j.started, j.finished) for j in r.jobs if j.started is not None and j.finished]
        job_windows += windows
        r.idle = latency_in(records, [r.idle_window])
        r.during_job = latency_in(records, windows)
        new_version = r.serving_after if r.serving_after != r.serving_before else None
        if new_version is not None:
            answered = [rec[0] + rec[1] for rec in records if rec[2] and rec[3] == new_version]
            if answered:
                r.traffic_swap_s = min(answered) - r.last_post
            r.swap_load_s = swaps.get(new_version, math.nan)
    idle_all = latency_in(records, [r.idle_window for r in rounds])
    busy_all = latency_in(records, job_windows)
    codes: dict[str, int] = defaultdict(int)
    for rec in records:
        if not rec[2]:
            codes[rec[4]] += 1
    total_s = time.perf_counter() - started
    p99_ratio = busy_all.p99_ms / idle_all.p99_ms
    report: dict[str, Any] = {
        "scenario": scenario.name,
        "description": scenario.description,
        "data": f"{args.data} ({len(scenario.test)} TEST rows, never posted)",
        "split": f"seed 0, min({args.test_per_intent}, n // 3) TEST rows per intent",
        "seed_rows": f"{len(scenario.seed_rows)} ({args.shots} per seed intent)",
        "init_s": round(init_s, 1),
        "v1_validation": {
            k: v for k, v in v1_meta.get("metrics", {}).items() if isinstance(v, int | float)
        },
        "traffic": f"{args.rate:g} req/s, 1 text per request, open loop",
        "overrides": json.dumps(overrides),
        "load_before": load_before,
        "load_after": loadavg(),
        "new_part": f"{len(scenario.focus)} intents"
        + (" unknown to version 1" if scenario.name == "new-intents" else " the rounds favour"),
        "focus_intents": scenario.focus,
        "seed_intents": scenario.seed_labels,
        "v1": asdict(v1),
        "rounds": [asdict(r) for r in rounds],
        "versions": [asdict(v) for v in versions],
        "latency": {
            "idle": asdict(idle_all),
            "during_job": asdict(busy_all),
            "p99_ratio": p99_ratio,
        },
        "traffic_totals": {
            "sent": len(records),
            "errors": sum(codes.values()),
            "error_codes": dict(codes),
            "skipped": traffic_result["skipped"],
        },
        "server_rss_mib": rss,
        "online": online,
        "summary": summary_lines(scenario, v1, rounds, p99_ratio),
        "total_s": total_s,
    }
    print_report(report, rounds, v1)
    print()
    print("== versions")
    for v in versions:
        print(
            f"  v{v.version} parent {v.parent} {v.status:<9} samples_upto {v.samples_upto:<5}"
            f" {v.reason}"
        )
    if args.json is not None:
        text = json.dumps(_no_nan(report), indent=2, default=str, allow_nan=False)
        args.json.write_text(text + "\n", encoding="utf-8")
        print(f"  wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
