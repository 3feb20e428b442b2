"""Real ``loopserve serve`` processes of a scale-out deployment on loopback: serving replicas and
trainers sharing a state dir (the stand-in for a ReadWriteMany volume) and a PostgreSQL, plus a
standard V2 client (tritonclient, in its own process) putting steady load on a replica."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conftest import TINY_MODEL
from waiting import wait_until

LOOPSERVE = str(Path(sys.executable).parent / "loopserve")
TRITON_CLIENT = str(Path(__file__).parent.parent / "triton_client.py")
READY_LINE = re.compile(r"serving .* on [\d.]+:(\d+) \(gRPC\), metrics on :(\d+)/metrics")


class Member:
    """One ``loopserve serve --role ...`` process; its stderr is kept for assertions."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [LOOPSERVE, "serve", *args], env=env, text=True,
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self.log: list[str] = []
        self.grpc_port, self.metrics_port = self._wait_ready(timeout=90)
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def text(self) -> str:
        return "".join(self.log)

    def _wait_ready(self, timeout: float) -> tuple[int, int]:
        deadline = time.monotonic() + timeout
        assert self.proc.stderr is not None
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                raise AssertionError(f"{self.name} exited before ready:\n{self.text()}")
            self.log.append(line)
            match = READY_LINE.search(line)
            if match:
                return int(match.group(1)), int(match.group(2))
        raise AssertionError(f"{self.name} not ready in time:\n{self.text()}")

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def wait_log(self, needle: str, timeout: float) -> float:
        """Block until ``needle`` appears in the log; the monotonic time it was seen."""
        wait_until(
            lambda: needle in self.text(), timeout,
            lambda: f"{self.name}: {needle!r} not logged:\n{self.text()}",
        )  # fmt: skip
        return time.monotonic()

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(5)
        return self.proc.returncode


@dataclass
class Deployment:
    models_dir: Path
    state_dir: Path  # shared by every member
    root: Path
    database_url: str
    poll_seconds: float = 2.0
    members: list[Member] = field(default_factory=list)

    def start(self, name: str, role: str, *extra: str) -> Member:
        work = self.root / "work" / name
        work.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "LOOPSERVE_DATABASE_URL": self.database_url,
            "LOOPSERVE_POLL_SECONDS": str(self.poll_seconds),
        }
        args = [
            "--model", TINY_MODEL, "--models-dir", str(self.models_dir),
            "--state-dir", str(self.state_dir), "--work-dir", str(work), "--role", role,
            "--host", "127.0.0.1", "--grpc-port", "0", "--metrics-port", "0",
            "--drain-seconds", "5", *extra,
        ]  # fmt: skip
        member = Member(name, args, env)
        self.members.append(member)
        return member

    def stop(self) -> None:
        for member in self.members:
            member.stop()


class Load:
    """Steady ModelInfer traffic from a standard V2 client against one replica."""

    def __init__(self, member: Member, root: Path) -> None:
        self.stop_file = root / f"stop-{member.name}-{time.monotonic_ns()}"
        self.proc = subprocess.Popen(
            [sys.executable, TRITON_CLIENT, "load", member.address, TINY_MODEL, str(self.stop_file)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.report: dict[str, Any] = {}

    def stop(self) -> dict[str, Any]:
        self.stop_file.touch()
        out, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, err
        self.report = json.loads(out)
        return self.report

    def first_seen(self, version: int) -> float | None:
        """Unix time this client first got an answer from ``version``."""
        seen = self.report["versions"].get(str(version))
        return None if seen is None else float(seen[0])
