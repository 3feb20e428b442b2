"""A flood of slow HTTP clients, run as its own process by the flood test.

``python slow_clients.py HOST PORT COUNT DELAY`` keeps COUNT clients at HOST:PORT, each sending
only ``GET /metrics HTTP/1.1\\r\\n`` and then nothing: a client the server closes connects again
after DELAY seconds. Prints ``ready`` once every client has started connecting, and a JSON line
of counts when stdin closes, then exits. A server that stops accepting leaves clients waiting in
connect (the kernel retries their SYNs), a cost to the client only.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
from dataclasses import asdict, dataclass

PARTIAL_REQUEST = b"GET /metrics HTTP/1.1\r\n"


@dataclass
class Counts:
    connected: int = 0  # connections established
    connect_errors: int = 0  # refused or failed connects
    answered: int = 0  # closed by the server with a response (such as a 503)
    dropped: int = 0  # closed by the server without a response (header deadline, shutdown)
    open_now: int = 0
    most_open: int = 0  # the most connections this process held at once


async def client(host: str, port: int, delay: float, counts: Counts) -> None:
    while True:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            counts.connect_errors += 1
        else:
            counts.connected += 1
            counts.open_now += 1
            counts.most_open = max(counts.most_open, counts.open_now)
            try:
                writer.write(PARTIAL_REQUEST)
                answer = await reader.read(64)  # until the server answers or closes
            except OSError:
                answer = b""
            counts.open_now -= 1
            if answer:
                counts.answered += 1
            else:
                counts.dropped += 1
            writer.close()
        await asyncio.sleep(delay)


async def main(host: str, port: int, count: int, delay: float) -> None:
    counts = Counts()
    tasks = [asyncio.create_task(client(host, port, delay, counts)) for _ in range(count)]
    await asyncio.sleep(0)  # every client has run to its first connect
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for task in tasks:
        task.cancel()
    print(json.dumps(asdict(counts)), flush=True)


if __name__ == "__main__":
    # An attacker runs on its own machine: here it shares the CPUs with the server under test,
    # so it yields them rather than slow the server's predictions by taking their CPU time.
    os.nice(10)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = int(sys.argv[3]) + 256
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
