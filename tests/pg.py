"""A real PostgreSQL for tests: one throwaway cluster per session, one fresh database per test.

The cluster is started by ``scripts/postgres.sh`` in a temporary directory. Without PostgreSQL's
server binaries the tests that need it are skipped, except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import itertools
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "postgres.sh"
_READY_DATABASES = 3


class PostgresServer:
    """A running cluster; ``admin_url`` connects as its superuser over TCP."""

    def __init__(self, directory: Path, admin_url: str) -> None:
        self.directory = directory
        self.admin_url = admin_url
        self.port = int(urllib.parse.urlsplit(admin_url).port or 0)
        self._names = itertools.count(1)
        # CREATE DATABASE takes a few hundred ms; a thread keeps a few ready while tests run.
        self._ready: queue.Queue[str | BaseException] = queue.Queue(maxsize=_READY_DATABASES)
        self._stopping = threading.Event()
        self._maker = threading.Thread(target=self._make_databases, daemon=True)
        self._maker.start()

    def new_database(self) -> str:
        """The URL of a new, empty database."""
        made = self._ready.get(timeout=60)
        if isinstance(made, BaseException):
            raise made
        return self.url(made)

    def drop_database(self, url: str) -> None:
        name = urllib.parse.urlsplit(url).path.lstrip("/")
        with self._admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def _create(self, name: str) -> str | BaseException:
        # A few tries: a test may be restarting the server just now.
        for attempt in range(5):
            try:
                with self._admin() as conn:
                    conn.execute(f"CREATE DATABASE {name}")
                return name
            except psycopg.Error as exc:
                if attempt == 4 or not isinstance(exc, psycopg.OperationalError):
                    return exc
                time.sleep(0.5)
        raise AssertionError("unreachable")

    def _make_databases(self) -> None:
        while not self._stopping.is_set():
            name = f"test_{os.getpid()}_{next(self._names)}"
            made = self._create(name)
            while not self._stopping.is_set():
                try:
                    self._ready.put(made, timeout=0.2)
                    break
                except queue.Full:
                    continue

    def url(self, database: str, password: str | None = None) -> str:
        parts = urllib.parse.urlsplit(self.admin_url)
        if password is not None:
            user = parts.username or ""
            parts = parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port}")
        return urllib.parse.urlunsplit(parts._replace(path=f"/{database}"))

    def terminate(self, application_name: str) -> int:
        """End every session of ``application_name`` (as ``pg_terminate_backend``); waits until
        they are gone and returns how many there were."""
        with self._admin() as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                " WHERE application_name = %s AND pid <> pg_backend_pid()",
                (application_name,),
            ).fetchall()
        return len(rows)

    def restart(self) -> None:
        """Restart on the same port: every session ends."""
        _script("restart", str(self.directory))

    def stop(self) -> None:
        self._stopping.set()
        self._maker.join(timeout=30)
        _script("stop", str(self.directory))

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10)


def _script(*args: str) -> str:
    result = subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"scripts/postgres.sh {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout.strip()


def _binaries_present() -> bool:
    return subprocess.run([str(SCRIPT), "bindir"], capture_output=True, check=False).returncode == 0


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    if not _binaries_present():
        message = "PostgreSQL server binaries not found (scripts/postgres.sh install)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    # Not under pytest's tmp dir: that is private to us, and as root the server runs as another
    # user, which needs to reach its directory.
    directory = Path(tempfile.mkdtemp(prefix="loopserve-pg-"))
    try:
        server = PostgresServer(directory, _script("start", str(directory)))
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def database_url(postgres_server: PostgresServer) -> Iterator[str]:
    url = postgres_server.new_database()
    yield url
    postgres_server.drop_database(url)
