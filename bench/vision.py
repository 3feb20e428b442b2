"""Image models on real data: few-shot accuracy, a closed-loop round and serving cost.

Data: the ELPV solar-cell electroluminescence scans (2,624 cells of 300 x 300 px, mono- and
polycrystalline; CC BY-NC-SA 4.0, so used here as a benchmark only and never copied into the
repository), from the ``elpv-dataset`` package (``.venv/bin/pip install elpv-dataset``). A
cell is ``defective`` when its defect probability is at least 0.5, else ``functional``. A fixed
held-out test split (30 % of each cell type and class, seed 0) is never trained on.

1. accuracy: version 1 built by the product's ``build_first_version`` from k labeled cells per
   class (k = 10 and 50, three draws of the cells each), once with the backbone frozen
   (``[train] finetune_layers = 0``: the head alone) and once with the low-LR fine-tune of the
   last stages kept whatever the builder's cross-validation says; accuracy of each exported ONNX
   model on the test split, and what the builder would have kept (the fine-tune where its
   out-of-fold accuracy over the seed cells beat the head's).
2. loop: a version trained on mono cells serves (``loopserve serve``); labels of poly cells
   arrive through AddSamples, a fine-tune is started, and the bench waits for the new version
   to serve. Accuracy through the server on poly (the new domain) and mono (forgetting) before
   and after, and the time from the first label sent to the new version serving.
3. serving: JPEG-encoded cells, one per ModelInfer request from a separate client process, at
   concurrency 1 (p50, p99) and 8 (throughput), against in-process ONNX Runtime on the same
   model file with the same decoding (service.tasks.image.decode_image) and thread count;
   decoding's own cost apart; the server's resident memory.

    .venv/bin/python bench/vision.py [--quick] [--sections accuracy,loop,serving]
        [--shots 10,50] [--draws 3] [--backbone mobilenet_v2] [--size 224] [--threads 0]
        [--json OUT]

``--quick`` uses k = 10 and one draw only, smaller test sets and shorter serving runs.
Everything runs in a temporary directory on 127.0.0.1; the server is always stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import multiprocessing
import os
import platform
import queue
import random
import secrets
import shutil
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.serving import (  # noqa: E402
    CLOCK_TICKS,
    INFER_METHOD,
    ServerProcess,
    _drive,
    machine_busy_seconds,
    proc_cpu_seconds,
    proc_status_mib,
    summarize,
)

MODEL = "elpv"
LABELS = ("defective", "functional")
TEST_FRACTION = 0.3
SHOTS = (10, 50)
LOOP_SHOTS = 50  # mono cells per class for the version that serves, poly cells per class posted
CONCURRENCIES = (1, 8)
JOB_TIMEOUT_S = 900.0
TARGET_FINETUNE_GAIN = 0.03
TARGET_LOOP_SECONDS = 120.0
TARGET_FORGETTING = 0.01
TARGET_P50_RATIO = 1.3


@dataclass(frozen=True)
class Cell:
    path: Path
    label: str
    kind: str  # "mono" or "poly"


# ------------------------------------------------------------------------------------------ data


def load_cells() -> list[Cell]:
    """The ELPV cells graded with certainty (defect probability 1: defective, 0: functional),
    from the installed package's files (its own loader reads them all at once)."""
    import importlib.util

    spec = importlib.util.find_spec("elpv_dataset")
    if spec is None or spec.origin is None:
        raise SystemExit("needs the elpv-dataset package: .venv/bin/pip install elpv-dataset")
    data = Path(spec.origin).parent / "data"
    cells = []
    for line in (data / "labels.csv").read_text(encoding="ascii").splitlines():
        path, probability, kind = line.split()
        if float(probability) in (0.0, 1.0):  # the experts' uncertain grades are left out
            label = LABELS[0] if float(probability) == 1.0 else LABELS[1]
            cells.append(Cell(data / path, label, kind))
    return cells


def split(cells: list[Cell], seed: int = 0) -> tuple[list[Cell], list[Cell]]:
    """(train pool, test): TEST_FRACTION of each (cell type, class) held out."""
    rng = random.Random(seed)
    train, test = [], []
    for group in sorted({(c.kind, c.label) for c in cells}):
        members = [c for c in cells if (c.kind, c.label) == group]
        rng.shuffle(members)
        cut = round(len(members) * TEST_FRACTION)
        test += members[:cut]
        train += members[cut:]
    return train, test


def draw(pool: list[Cell], per_class: int, seed: int, kinds: Sequence[str]) -> list[Cell]:
    rng = random.Random(seed)
    chosen = []
    for label in LABELS:
        members = [c for c in pool if c.label == label and c.kind in kinds]
        chosen += rng.sample(members, per_class)
    return chosen


def jpeg(cell: Cell) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    with Image.open(cell.path) as image:
        image.convert("RGB").save(out, "JPEG", quality=90)
    return out.getvalue()


# ------------------------------------------------------------------------------------- building


def write_model(models: Path, seed: list[Cell], args: argparse.Namespace, frozen: bool) -> Path:
    """models/elpv/: model.toml and seed/<label>/ links to the chosen cells."""
    directory = models / MODEL
    shutil.rmtree(directory, ignore_errors=True)
    for cell in seed:
        target = directory / "seed" / cell.label / cell.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(cell.path)
    train = "finetune_layers = 0\n" if frozen else ""
    (directory / "model.toml").write_text(
        "[model]\n"
        'task = "image-classification"\n'
        f'backbone = "bundled:{args.backbone}"\n'
        'seed_data = "seed"\n'
        f"labels = {json.dumps(list(LABELS))}\n\n"
        f"[input]\nsize = {args.size}\n\n"
        f"[train]\nseed = 0\n{train}\n"
        f"[serving]\nintra_op_threads = {args.threads}\nmax_batch_size = 8\n\n"
        "[drift]\ndetectors = []\n",
        encoding="utf-8",
    )
    return directory


def build(models: Path, state: Path) -> tuple[Path, float]:
    """Version 1 through the product's builder: (its directory, seconds)."""
    from service.config import load_model_definition
    from service.registry import ModelRegistry
    from service.training import build_first_version

    shutil.rmtree(state, ignore_errors=True)
    started = time.perf_counter()
    definition = load_model_definition(models, MODEL)
    info = build_first_version(definition, ModelRegistry(state, MODEL), progress=lambda _: None)
    return info.path, time.perf_counter() - started


class Classifier:
    """A version loaded as the server loads it (tasks.open_version, the same session options),
    in this process, decoding as the server does."""

    def __init__(self, state: Path, threads: int) -> None:
        from service import tasks
        from service.registry import ModelRegistry
        from service.runtime import SessionOptions
        from service.tasks.image import ImageOptions

        info = ModelRegistry(state, MODEL).current()
        assert info is not None
        options = ImageOptions.parse(dict(info.meta.inputs), "meta.json inputs")
        self.spec, self.limits, self.labels = options.spec(), options.limits(), info.labels
        self.loaded = tasks.open_version(MODEL, info, SessionOptions(threads, "cpu", True))
        self.loaded.warm_up()

    def decode(self, data: bytes) -> Any:
        from service.tasks.image import decode_image

        return decode_image(data, self.spec, self.limits)

    def predict(self, pixels: list[Any]) -> list[str]:
        probabilities = self.loaded.predict(pixels).probabilities
        return [self.labels[i] for i in np.argmax(probabilities, axis=1)]

    def accuracy(self, cells: list[Cell]) -> tuple[float, float]:
        """(accuracy, balanced accuracy: the mean of the per-class recalls) on ``cells``."""
        predicted: list[str] = []
        for start in range(0, len(cells), 16):
            batch = cells[start : start + 16]
            predicted += self.predict([self.decode(c.path.read_bytes()) for c in batch])
        return scores(predicted, [c.label for c in cells])


def scores(predicted: Sequence[str], gold: Sequence[str]) -> tuple[float, float]:
    right = [p == g for p, g in zip(predicted, gold, strict=True)]
    recalls = [
        sum(r for r, g in zip(right, gold, strict=True) if g == label) / gold.count(label)
        for label in sorted(set(gold))
    ]
    return sum(right) / len(right), sum(recalls) / len(recalls)


# ------------------------------------------------------------------------------------- sections


def bench_accuracy(
    pool: list[Cell], test: list[Cell], work: Path, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Per k and draw: version 1 with the frozen backbone (the head alone) and with the
    fine-tune forced; what the builder would keep follows from the cross-validation scores
    the fine-tuned build records (the head alone when its out-of-fold score is better)."""
    rows = []
    for shots in args.shots or (SHOTS[:1] if args.quick else SHOTS):
        for draw_number in range(args.draws):
            seed = draw(pool, shots, seed=shots + 1000 * draw_number, kinds=("mono", "poly"))
            for frozen in (True, False):
                models = work / "models"
                state = work / f"state-acc-{shots}-{draw_number}-{int(frozen)}"
                write_model(models, seed, args, frozen)
                with forced_fine_tune(not frozen):
                    version, seconds = build(models, state)
                accuracy, balanced = Classifier(state, args.threads).accuracy(test)
                train = json.loads((version / "meta.json").read_text()).get("train", {})
                rows.append(
                    {
                        "per_class": shots,
                        "draw": draw_number,
                        "mode": "frozen head" if frozen else "fine-tune",
                        "test_accuracy": accuracy,
                        "test_balanced_accuracy": balanced,
                        "cv_head": (train.get("head_only") or {}).get("cv_accuracy"),
                        "cv_fine_tune": (train.get("finetuned") or {}).get("cv_accuracy"),
                        "build_s": seconds,
                    }
                )
                print(
                    f"  {shots}/class draw {draw_number} {rows[-1]['mode']}: accuracy "
                    f"{accuracy:.3f}, balanced {balanced:.3f} ({seconds:.0f} s to build)"
                )
    return rows


def forced_fine_tune(forced: bool) -> contextlib.AbstractContextManager[Any]:
    """The builder keeps the fine-tune whatever cross-validation says (its scores are still
    computed and recorded), so that both are measured on every draw."""
    from unittest import mock

    from service.tasks.image.training._trainer import FoldScores

    if not forced:
        return contextlib.nullcontext()
    return mock.patch.object(FoldScores, "fine_tune_wins", lambda self: True)


def accuracy_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per k: the mean (and range) over draws of the head, the forced fine-tune and the
    builder's choice, which is the fine-tune where its out-of-fold accuracy beat the head's."""
    summary = []
    for shots in sorted({r["per_class"] for r in rows}):
        pairs = [
            (h, t)
            for h in rows
            for t in rows
            if h["per_class"] == t["per_class"] == shots
            and h["draw"] == t["draw"]
            and h["mode"] == "frozen head"
            and t["mode"] == "fine-tune"
        ]
        if not pairs:
            continue
        head = [h["test_accuracy"] for h, _ in pairs]
        tuned = [t["test_accuracy"] for _, t in pairs]
        chosen = [
            t["test_accuracy"] if _fine_tune_chosen(t) else h["test_accuracy"] for h, t in pairs
        ]
        summary.append(
            {
                "per_class": shots,
                "draws": len(pairs),
                "head": _spread(head),
                "fine_tune": _spread(tuned),
                "builder_choice": _spread(chosen),
                "fine_tune_chosen": sum(_fine_tune_chosen(t) for _, t in pairs),
                "gain": float(np.mean(tuned) - np.mean(head)),
            }
        )
    return summary


def _fine_tune_chosen(row: dict[str, Any]) -> bool:
    head, tuned = row["cv_head"], row["cv_fine_tune"]
    return head is not None and tuned is not None and tuned > head


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "min": min(values), "max": max(values)}


def bench_loop(
    pool: list[Cell], test: list[Cell], work: Path, args: argparse.Namespace
) -> dict[str, Any]:
    from service.api.adaptation_client import AdaptationClient
    from service.api.channel import ChannelOptions
    from service.domain.loop import NewSample

    models, state = work / "models", work / "state-loop"
    write_model(models, draw(pool, LOOP_SHOTS, seed=1, kinds=("mono",)), args, frozen=False)
    build(models, state)
    mono = [c for c in test if c.kind == "mono"]
    poly = [c for c in test if c.kind == "poly"]
    if args.quick:
        mono, poly = mono[:150], poly[:150]
    posted = draw(pool, LOOP_SHOTS, seed=2, kinds=("poly",))
    # The labels come from the inspection team's token (label:trusted): a round a trusted team
    # labeled skips the poisoning review, which would otherwise hold this legitimate domain
    # shift (one source contradicting the serving model) for a person to approve.
    operator, inspectors = secrets.token_hex(16), secrets.token_hex(16)
    tokens = f"operator:admin:{operator};inspectors:label:trusted:{inspectors}"
    env = {"LOOPSERVE_TOKENS": tokens}
    with ServerProcess(state, models, work / "loop-server.log", model=MODEL, env=env) as server:
        server.wait_ready(token=operator)
        before = served_scores(server.address, {"poly": poly, "mono": mono}, operator)
        print(f"  before: poly {before['poly']:.3f}, mono {before['mono']:.3f}")
        with (
            AdaptationClient(server.address, options=ChannelOptions(token=inspectors)) as team,
            AdaptationClient(server.address, options=ChannelOptions(token=operator)) as client,
        ):
            started = time.perf_counter()
            cpu_before = machine_busy_seconds(), children_cpu_seconds(server.proc.pid)
            server_before = proc_cpu_seconds(server.proc.pid)
            samples = [NewSample("", c.label, data=c.path.read_bytes()) for c in posted]
            for i in range(0, len(samples), 50):
                team.add_samples(MODEL, samples[i : i + 50])
            with contextlib.suppress(Exception):  # the policy may already have started one
                client.start_fine_tune(MODEL, "bench: poly cells labeled")
            job, serving = wait_for_job(client)
            seconds = time.perf_counter() - started
            job_cpu = children_cpu_seconds(server.proc.pid) - cpu_before[1]
            server_cpu = proc_cpu_seconds(server.proc.pid) - server_before
            others_cpu = machine_busy_seconds() - cpu_before[0] - job_cpu - server_cpu
        after = served_scores(server.address, {"poly": poly, "mono": mono}, operator)
        rss = proc_status_mib(server.proc.pid, "VmRSS")
    gate = job.gate
    timeline = job_timeline(state)
    result = {
        "posted": len(posted),
        "before": before,
        "after": after,
        "labels_to_serving_s": seconds if serving > 1 else None,
        "serving_version": serving,
        "job": {
            "state": job.state.value,
            "error": job.error,
            "gate": asdict(gate) if gate else None,
        },
        "forgetting": before["mono"] - after["mono"],
        "server_rss_mib": rss,
        # Where the round's CPU time went: the job process, the server (receiving, decoding,
        # swapping), and every other process on the machine in the same window.
        "cpu_s": {"job": job_cpu, "server": server_cpu, "others": max(others_cpu, 0.0)},
        "job_log": timeline,
        "test": {"poly": len(poly), "mono": len(mono)},
    }
    print(
        f"  after: poly {after['poly']:.3f}, mono {after['mono']:.3f}; job {job.state.value}, "
        f"version {serving} serving {seconds:.0f} s after the first label"
    )
    print(
        f"  CPU seconds in the round: job {job_cpu:.0f}, server {server_cpu:.0f}, other "
        f"processes {max(others_cpu, 0.0):.0f}"
    )
    for line in timeline:
        print(f"    job: {line}")
    return result


def children_cpu_seconds(pid: int) -> float:
    """cutime + cstime of ``pid``: the CPU time of its children that have ended (a job)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / CLOCK_TICKS


def job_timeline(state: Path) -> list[str]:
    """The timed lines of the round's job log (its phases), if the log is still there."""
    logs = sorted(state.rglob("job.log"), key=lambda path: path.stat().st_mtime)
    if not logs:
        return []
    lines = logs[-1].read_text(encoding="utf-8", errors="replace").splitlines()
    return [line for line in lines if "s)" in line or "s " in line or "seconds" in line][-30:]


def wait_for_job(client: Any) -> tuple[Any, int]:
    """The round's job once finished, and the version then serving (a promoted candidate swaps
    in just after its job finishes; one waiting for review does not)."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        status = client.model_status(MODEL)
        job = status.job
        if job is not None and job.state.finished:
            pending = any(v.status == "pending" for v in client.list_versions(MODEL))
            promoted = job.gate is not None and job.gate.promote and not pending
            if status.serving_version > 1 or not promoted:
                return job, status.serving_version
        time.sleep(0.5)
    raise TimeoutError(f"no finished job after {JOB_TIMEOUT_S:.0f} s")


def served_scores(
    address: str, domains: dict[str, list[Cell]], token: str | None = None
) -> dict[str, float]:
    """Accuracy (``<domain>``) and balanced accuracy (``<domain>_balanced``) through the server."""
    result = {}
    for name, cells in domains.items():
        result[name], result[f"{name}_balanced"] = scores(
            served_labels(address, cells, token=token), [c.label for c in cells]
        )
    return result


def served_labels(
    address: str, cells: list[Cell], batch: int = 8, token: str | None = None
) -> list[str]:
    import grpc

    from service.api._proto.inference import grpc_predict_v2_pb2 as pb

    predicted: list[str] = []
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(
            INFER_METHOD,
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        for start in range(0, len(cells), batch):
            chunk = cells[start : start + batch]
            metadata = (("authorization", f"Bearer {token}"),) if token else None
            response = call(infer_request([jpeg(c) for c in chunk]), timeout=60, metadata=metadata)
            predicted += response_labels(response)
    return predicted


def infer_request(images: list[bytes]) -> Any:
    from service.api._proto.inference import grpc_predict_v2_pb2 as pb

    request = pb.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="image", datatype="BYTES", shape=[len(images)])
    request.raw_input_contents.append(b"".join(struct.pack("<I", len(i)) + i for i in images))
    return request


def response_labels(response: Any) -> list[str]:
    names = [o.name for o in response.outputs]
    raw, labels, offset = response.raw_output_contents[names.index("label")], [], 0
    while offset < len(raw):
        size = struct.unpack_from("<I", raw, offset)[0]
        labels.append(raw[offset + 4 : offset + 4 + size].decode())
        offset += 4 + size
    return labels


def bench_serving(
    models: Path, state: Path, test: list[Cell], work: Path, args: argparse.Namespace
) -> dict[str, Any]:
    images = [jpeg(c) for c in test[: 64 if args.quick else 200]]
    requests, duration = (200, 10.0) if args.quick else (1000, 30.0)
    images_file = work / "images.json"
    images_file.write_text(json.dumps([i.hex() for i in images]))
    in_process = in_fresh_process(state, args.threads, images_file, requests, duration)
    with ServerProcess(state, models, work / "serving-server.log", model=MODEL) as server:
        ready = server.wait_ready()
        rss_loaded = proc_status_mib(server.proc.pid, "VmRSS")
        phases = run_client(server, images_file, requests, duration)
        rss = proc_status_mib(server.proc.pid, "VmRSS")
    # Measured again after the server: on shared cores the load of other processes changes
    # within minutes; the ratio takes the faster of the two in-process runs.
    in_process_after = in_fresh_process(state, args.threads, images_file, requests, duration)
    if in_process_after["one"]["p50_ms"] < in_process["one"]["p50_ms"]:
        in_process, in_process_after = in_process_after, in_process
    result = {
        "images": len(images),
        "jpeg_kib_mean": sum(map(len, images)) / len(images) / 1024,
        "in_process": in_process,
        "in_process_other_run": in_process_after,
        "server": [asdict(p) for p in phases],
        "ready_s": ready,
        "server_rss_loaded_mib": rss_loaded,
        "server_rss_mib": rss,
    }
    result["p50_ratio"] = phases[0].p50_ms / in_process["one"]["p50_ms"]
    return result


def in_process_main(
    state: str, threads: int, images_file: str, requests: int, duration: float, out: Any
) -> None:
    try:
        images = [bytes.fromhex(h) for h in json.loads(Path(images_file).read_text())]
        out.put(bench_in_process(Classifier(Path(state), threads), images, requests, duration))
    except BaseException as exc:
        out.put({"error": f"{type(exc).__name__}: {exc}"})


def in_fresh_process(
    state: Path, threads: int, images_file: Path, requests: int, duration: float
) -> dict[str, Any]:
    """bench_in_process in a spawned process: this one has trained with torch, whose threads
    would compete with ONNX Runtime's."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    args = (str(state), threads, str(images_file), requests, duration, out)
    process = ctx.Process(target=in_process_main, args=args)
    process.start()
    try:
        result: dict[str, Any] = out.get(timeout=300 + 3 * duration)
    finally:
        process.join(timeout=30)
    if "error" in result:
        raise RuntimeError(f"in-process run failed: {result['error']}")
    return result


def bench_in_process(
    local: Classifier, images: list[bytes], requests: int, duration: float
) -> dict[str, Any]:
    """One image at a time (decode + run), decoding alone, and batches of 8."""

    def timed(step: Callable[[int], object], count: int) -> dict[str, float]:
        for i in range(8):
            step(i)
        latencies, cpu0, start = [], time.process_time(), time.perf_counter()
        busy0 = machine_busy_seconds()
        for i in range(count):
            t0 = time.perf_counter()
            step(i)
            latencies.append(time.perf_counter() - t0)
            if time.perf_counter() - start > duration:
                break
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
        busy = machine_busy_seconds() - busy0
        ms = np.asarray(latencies) * 1000
        return {
            "other_cores": max(0.0, busy - cpu) / wall,
            "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)),
            "per_s": len(latencies) / wall,
            "cpu_ms": cpu * 1000 / len(latencies),
        }

    n = len(images)

    def batch8(i: int) -> None:
        local.predict([local.decode(images[(8 * i + j) % n]) for j in range(8)])

    one = timed(lambda i: local.predict([local.decode(images[i % n])]), requests)
    decode = timed(lambda i: local.decode(images[i % n]), requests)
    eight = timed(batch8, max(requests // 8, 16))
    eight["per_s"] *= 8
    return {"one": one, "decode": decode, "batch8": eight}


async def _client(
    address: str, images: list[bytes], requests: int, duration: float
) -> dict[str, Any]:
    from grpc import aio

    encoded = [infer_request([i]).SerializeToString() for i in images]
    phases = []
    async with aio.insecure_channel(address) as channel:
        call = channel.unary_unary(INFER_METHOD)
        for concurrency in CONCURRENCIES:
            await asyncio.gather(*(call(encoded[i % len(encoded)], timeout=60) for i in range(16)))
            cpu0, busy0, start = time.process_time(), machine_busy_seconds(), time.perf_counter()
            latencies, errors = await _drive(call, encoded, concurrency, requests, duration)
            phases.append(
                {
                    "concurrency": concurrency,
                    "latencies": latencies,
                    "seconds": time.perf_counter() - start,
                    "client_cpu": time.process_time() - cpu0,
                    "machine_busy": machine_busy_seconds() - busy0,
                    "errors": len(errors),
                    "first_error": errors[0] if errors else "",
                }
            )
    return {"phases": phases}


def client_main(address: str, images_file: str, requests: int, duration: float, out: Any) -> None:
    try:
        images = [bytes.fromhex(h) for h in json.loads(Path(images_file).read_text())]
        out.put(asyncio.run(_client(address, images, requests, duration)))
    except BaseException as exc:
        out.put({"error": f"{type(exc).__name__}: {exc}"})


def run_client(
    server: ServerProcess, images_file: Path, requests: int, duration: float
) -> list[Any]:
    """Drive the server from a spawned process, so that the client's Python does not share
    this process's interpreter; the server's CPU is read around the whole run."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    cpu0 = proc_cpu_seconds(server.proc.pid)
    client = ctx.Process(
        target=client_main, args=(server.address, str(images_file), requests, duration, out)
    )
    client.start()
    try:
        result = out.get(timeout=120 + len(CONCURRENCIES) * (duration + 60))
    except queue.Empty:
        raise TimeoutError("client process did not finish in time") from None
    finally:
        client.join(timeout=30)
        if client.is_alive():
            client.terminate()
    if "error" in result:
        raise RuntimeError(f"client failed: {result['error']}\n{server.tail()}")
    server_cpu = proc_cpu_seconds(server.proc.pid) - cpu0
    total = sum(p["seconds"] for p in result["phases"]) or 1.0
    return [
        summarize(
            f"server c={p['concurrency']}",
            p["latencies"],
            len(p["latencies"]),
            p["seconds"],
            server_cpu * p["seconds"] / total,
            client_cpu_s=p["client_cpu"],
            errors=p["errors"],
            first_error=p["first_error"],
            machine_busy_s=p["machine_busy"],
        )
        for p in result["phases"]
    ]


# ------------------------------------------------------------------------------------------ main


def machine() -> dict[str, Any]:
    import onnxruntime as ort

    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as handle:
        cpu = next(
            (line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu
        )
    return {
        "cpu": cpu,
        "cpus": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "load_average": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="k = 10 only, smaller sets, short runs"
    )
    parser.add_argument("--sections", default="accuracy,loop,serving")
    parser.add_argument(
        "--shots",
        type=lambda text: [int(n) for n in text.split(",")],
        help="labeled cells per class for the accuracy section (default 10,50; --quick: 10)",
    )
    parser.add_argument(
        "--draws",
        type=int,
        help="draws of the labeled cells per k for the accuracy section (default 3; --quick: 1)",
    )
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument(
        "--threads", type=int, default=0, help="ORT intra-op threads (0: all cores)"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    sections = set(args.sections.split(","))
    if args.draws is None:
        args.draws = 1 if args.quick else 3
    if args.threads == 0:
        args.threads = len(os.sched_getaffinity(0))
    report: dict[str, Any] = {
        "command": " ".join(
            ["python", "bench/vision.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "machine": machine(),
    }
    print(f"{report['command']}\n{report['machine']}")
    cells = load_cells()
    pool, test = split(cells)
    if args.quick:
        test = random.Random(0).sample(test, 300)
    report["data"] = {"cells": len(cells), "train_pool": len(pool), "test": len(test)}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="loopserve-vision-") as tmp:
        work = Path(tmp)
        if "accuracy" in sections:
            print("accuracy on the held-out cells (mono and poly):")
            report["accuracy"] = guarded(lambda: bench_accuracy(pool, test, work, args))
            if isinstance(report["accuracy"], list):
                report["accuracy_summary"] = accuracy_summary(report["accuracy"])
        if "loop" in sections:
            print(f"closed loop: version on mono cells, {LOOP_SHOTS}/class poly labels posted:")
            report["loop"] = guarded(lambda: bench_loop(pool, test, work, args))
        if "serving" in sections:
            print("serving JPEG cells:")
            report["serving"] = guarded(lambda: serving_section(pool, test, work, args))
    report["total_s"] = time.perf_counter() - started
    print_summary(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


def serving_section(
    pool: list[Cell], test: list[Cell], work: Path, args: argparse.Namespace
) -> dict[str, Any]:
    models, state = work / "models", work / "state-serving"
    write_model(models, draw(pool, 10, seed=3, kinds=("mono", "poly")), args, frozen=True)
    try:
        build(models, state)
    except Exception as exc:  # serving cost does not depend on what the head learned
        print(
            f"  the builder failed ({type(exc).__name__}: {exc}); serving the backbone with an untrained head"
        )
        publish_untrained(state, args)
    return bench_serving(models, state, test, work, args)


def publish_untrained(state: Path, args: argparse.Namespace) -> None:
    """Version 1: the ImageNet backbone and a randomly initialised head, exported as served."""
    import torch

    from service.domain.versions import VersionMeta
    from service.registry import ModelRegistry
    from service.tasks.image import ImageOptions
    from service.tasks.image.training import ImageClassifier, build_backbone, export_onnx

    shutil.rmtree(state, ignore_errors=True)
    torch.manual_seed(0)
    features, _ = build_backbone(args.backbone, f"bundled:{args.backbone}", trainable_stages=0)
    registry = ModelRegistry(state, MODEL)
    with registry.stage(parent=None) as staged:
        export_onnx(ImageClassifier(features, len(LABELS)), staged.path / "model.onnx", args.size)
        inputs = ImageOptions(size=args.size).as_dict()
        meta = VersionMeta(
            labels=LABELS, max_seq_length=0, task="image-classification", inputs=inputs
        )
        info = registry.publish(staged, meta)
    registry.set_current(info.version, expected=None)


def guarded(section: Callable[[], Any]) -> Any:
    """A section's result, or what stopped it (the others still run)."""
    try:
        return section()
    except Exception as exc:  # a benchmark reports what failed and goes on
        print(f"  not measured: {type(exc).__name__}: {exc}")
        return {"error": f"{type(exc).__name__}: {exc}"}


def print_summary(report: dict[str, Any]) -> None:
    print("\n== summary ==")
    print(f"command: {report['command']}")
    print(f"machine: {report['machine']['cpu']}, {report['machine']['cpus']} CPUs")
    for row in report.get("accuracy_summary") or []:
        gain = row["gain"]
        mark = "ok" if gain >= TARGET_FINETUNE_GAIN else "below target"
        head, tuned, chosen = row["head"], row["fine_tune"], row["builder_choice"]
        print(
            f"{row['per_class']}/class over {row['draws']} draw(s): frozen head "
            f"{head['mean']:.1%} ({head['min']:.1%}-{head['max']:.1%}), fine-tune "
            f"{tuned['mean']:.1%} ({tuned['min']:.1%}-{tuned['max']:.1%}): {gain:+.1%} "
            f"(target +3 points at 50/class: {mark}); the builder's choice "
            f"{chosen['mean']:.1%}, the fine-tune in {row['fine_tune_chosen']} of {row['draws']}"
        )
    loop = report.get("loop")
    if isinstance(loop, dict) and "before" in loop:
        seconds = loop["labels_to_serving_s"]
        print(
            f"loop: poly {loop['before']['poly']:.1%} -> {loop['after']['poly']:.1%}, mono "
            f"{loop['before']['mono']:.1%} -> {loop['after']['mono']:.1%} (forgetting "
            f"{loop['forgetting']:+.1%}, target <= 1 point); labels to serving "
            + (
                f"{seconds:.0f} s (target <= {TARGET_LOOP_SECONDS:.0f} s)"
                if seconds
                else "- (no new version)"
            )
        )
    serving = report.get("serving")
    if isinstance(serving, dict) and "in_process" in serving:
        one, decode = serving["in_process"]["one"], serving["in_process"]["decode"]
        c1, c8 = serving["server"][0], serving["server"][1]
        print(
            f"serving: in-process p50 {one['p50_ms']:.1f} ms (decode {decode['p50_ms']:.1f} ms), "
            f"batch 8 {serving['in_process']['batch8']['per_s']:.0f}/s; server c=1 p50 "
            f"{c1['p50_ms']:.1f} ms p99 {c1['p99_ms']:.1f} ms, c=8 {c8['texts_per_s']:.0f}/s; "
            f"p50 ratio {serving['p50_ratio']:.2f} (target <= {TARGET_P50_RATIO}); "
            f"server RSS {serving['server_rss_mib']:.0f} MiB"
        )
    print(f"total {report['total_s']:.0f} s")


if __name__ == "__main__":
    raise SystemExit(main())
