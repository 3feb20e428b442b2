"""What a console page costs the server: ModelInfer latency with the overview page open and
refreshing, against it closed, in one run of one ``loopserve serve``.

The server (support-intents on all-MiniLM-L6-v2, built into a temporary state dir unless
``--state-dir`` has it) serves gRPC and the console on loopback without tokens. One client
process sends one text per ModelInfer, back to back (concurrency 1), through phases of
``--phase-seconds`` each, in the order closed, open, closed, open, ... (``--rounds`` of each,
interleaved so that a slow drift of the machine hits both alike):

- closed: no browser; the console's own once-every-10-s history sampling still runs;
- open: a separate process plays the overview page: it loads ``/`` and then fetches the
  fragment ``/fragments/overview`` every 5 s, as the page's htmx poll does;
- busy (``--busy``): the fragment fetched back to back by one client, an upper bound of what
  many open pages could cost.

It prints per phase kind the ModelInfer p50 and p99 (client-side, ms) and the overview
fragment's own response time. Usage::

    .venv/bin/python bench/console.py [--phase-seconds 20] [--rounds 3] [--busy] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.serving import (  # noqa: E402
    MODEL,
    ServerProcess,
    _encode_request,
    ensure_built,
    free_port,
    load_texts,
)

REFRESH_S = 5.0  # the overview's hx-trigger="every 5s"


def browser(origin: str, interval: float, stop: Any, times: Any) -> None:
    """The overview page: one load, then the fragment every ``interval`` seconds (0: back to
    back) until ``stop`` is set; each fetch's seconds go to ``times``."""
    import httpx

    with httpx.Client(base_url=origin, timeout=30) as client:
        client.get("/").raise_for_status()  # opens the (anonymous) session
        while not stop.is_set():
            started = time.perf_counter()
            client.get("/fragments/overview").raise_for_status()
            times.put(time.perf_counter() - started)
            if interval:
                stop.wait(interval)


def infer_for(address: str, texts: list[str], seconds: float) -> list[float]:
    """ModelInfer back to back for ``seconds``; each call's milliseconds."""
    import grpc

    latencies: list[float] = []
    requests = [_encode_request(t) for t in texts[:200]]
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        for raw in requests[:20]:  # warm the channel
            call(raw, timeout=10)
        end = time.perf_counter() + seconds
        i = 0
        while time.perf_counter() < end:
            started = time.perf_counter()
            call(requests[i % len(requests)], timeout=10)
            latencies.append((time.perf_counter() - started) * 1000)
            i += 1
    return latencies


def phase(
    kind: str, server: ServerProcess, origin: str, texts: list[str], seconds: float
) -> tuple[list[float], list[float]]:
    """One phase: ModelInfer latencies (ms) and the fragment's response times (ms)."""
    ctx = multiprocessing.get_context("spawn")
    stop, times = ctx.Event(), ctx.Queue()
    page = None
    if kind != "closed":
        interval = REFRESH_S if kind == "open" else 0.0
        page = ctx.Process(target=browser, args=(origin, interval, stop, times), daemon=True)
        page.start()
    try:
        latencies = infer_for(server.address, texts, seconds)
    finally:
        stop.set()
        if page is not None:
            page.join(30)
    fetched = []
    while not times.empty():
        fetched.append(times.get() * 1000)
    return latencies, fetched


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {
        "n": len(values),
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument("--phase-seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--busy", action="store_true", help="also a back-to-back fragment client")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    texts, source = load_texts()
    kinds = ["closed", "open", *(["busy"] if args.busy else [])]
    with tempfile.TemporaryDirectory(prefix="console-bench-") as tmp:
        work = Path(tmp)
        state = args.state_dir or work / "state"
        ensure_built(state, REPO / "models")
        console_port = free_port()
        origin = f"http://127.0.0.1:{console_port}"
        extra = ("--console-port", str(console_port))
        with ServerProcess(state, REPO / "models", work / "server.log", extra=extra) as server:
            server.wait_ready()
            results: dict[str, dict[str, list[float]]] = {
                k: {"infer": [], "page": []} for k in kinds
            }
            for round_ in range(args.rounds):
                for kind in kinds:
                    infer, page = phase(kind, server, origin, texts, args.phase_seconds)
                    results[kind]["infer"] += infer
                    results[kind]["page"] += page
                    print(f"round {round_ + 1} {kind}: {summary(infer)}", flush=True)
    report = {
        "model": MODEL,
        "texts": source,
        "phase_seconds": args.phase_seconds,
        "rounds": args.rounds,
        "infer_ms": {k: summary(v["infer"]) for k, v in results.items()},
        "overview_fragment_ms": {k: summary(v["page"]) for k, v in results.items() if v["page"]},
    }
    print(json.dumps(report, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
