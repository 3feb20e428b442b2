"""Samples and jobs in one SQLite database file (``<state_dir>/loopserve.db``).

Durability: WAL journal with ``synchronous=FULL`` fsyncs the log on every commit, so once
:meth:`SQLiteStore.add` returns the batch survives a process crash and a power loss alike.

Concurrency: one connection, serialized by a lock. SQLite admits a single writer at a time
anyway, every statement here is an index lookup or a short range scan, and one connection makes
:meth:`SQLiteStore.close` final: per-thread connections would outlive ``close`` in the threads of
gRPC and training pools that we do not own. ``busy_timeout`` only matters when another process
(an operator's ``sqlite3`` shell, a backup) holds the file.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.domain.loop import (
    AddOutcome,
    GateResult,
    Job,
    JobState,
    NewSample,
    Sample,
    SourceSummary,
)
from service.errors import ConfigError, InvalidInput, NotFound, Unavailable, quote

if TYPE_CHECKING:
    from service.store._interface import JobStore, SampleStore

_BUSY_TIMEOUT_MS = 5000

# Migration i takes the schema from version i to i + 1; the database records its version in
# ``PRAGMA user_version``. Append, never edit: released databases have run the earlier steps.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        # AUTOINCREMENT: a seq is never reused, even after rows are deleted, because versions
        # record the last seq they trained on.
        """
        CREATE TABLE samples (
            seq           INTEGER PRIMARY KEY AUTOINCREMENT,
            model         TEXT NOT NULL,
            id            TEXT NOT NULL,
            text          TEXT NOT NULL,
            label         TEXT NOT NULL,
            prediction_id TEXT NOT NULL,
            created       REAL NOT NULL,
            UNIQUE (model, id)
        )
        """,
        "CREATE INDEX samples_by_model_seq ON samples (model, seq)",
        # ``n`` orders jobs by creation; ``created`` can tie within one clock tick.
        """
        CREATE TABLE jobs (
            n                 INTEGER PRIMARY KEY AUTOINCREMENT,
            id                TEXT NOT NULL UNIQUE,
            model             TEXT NOT NULL,
            state             TEXT NOT NULL,
            "trigger"         TEXT NOT NULL,
            reason            TEXT NOT NULL,
            base_version      INTEGER NOT NULL,
            samples_upto      INTEGER NOT NULL,
            created           REAL NOT NULL,
            started           REAL,
            finished          REAL,
            candidate_version INTEGER,
            gate              TEXT,
            error             TEXT NOT NULL,
            attempt           INTEGER NOT NULL
        )
        """,
        "CREATE INDEX jobs_by_model ON jobs (model, n)",
        "CREATE INDEX jobs_by_state ON jobs (state)",
    ),
    (
        # Provenance: the token name that posted each sample (older rows: "").
        "ALTER TABLE samples ADD COLUMN source TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX samples_by_model_source ON samples (model, source, seq)",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)

_SAMPLE_COLUMNS = "model, id, text, label, prediction_id, created, seq, source"
_JOB_FIELDS = tuple(f.name for f in dataclasses.fields(Job))
_JOB_COLUMNS = ", ".join(f'"{name}"' for name in _JOB_FIELDS)
_UPDATABLE = frozenset(_JOB_FIELDS) - {"id"}
_UNFINISHED = (JobState.QUEUED.value, JobState.RUNNING.value)


class SQLiteStore:
    """Both :class:`SampleStore` and :class:`JobStore` on one database file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # Autocommit mode: transactions are opened explicitly, so none is ever left open by
        # the module's implicit BEGIN.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode != "wal":
                raise ConfigError(f"{path}: SQLite cannot use WAL journal mode here (got {mode!r})")
            conn.execute("PRAGMA synchronous = FULL")
            _migrate(conn, path)
        except BaseException:
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # --- samples --------------------------------------------------------------------------------

    def add(self, model: str, samples: Sequence[NewSample]) -> AddOutcome:
        accepted = duplicates = 0
        ids: list[str] = []
        # A repeat inside the batch follows the same rule as a repeat of a stored sample. The
        # transaction already sees the batch's own rows; this only makes the message precise.
        posted: dict[str, tuple[str, str]] = {}
        created = time.time()
        with self._transaction() as conn:
            for sample in samples:
                sample_id = sample.id or uuid.uuid4().hex
                if sample_id in posted:
                    stored: tuple[str, str] | None = posted[sample_id]
                    where = "earlier in the batch"
                else:
                    stored = conn.execute(
                        "SELECT text, label FROM samples WHERE model = ? AND id = ?",
                        (model, sample_id),
                    ).fetchone()
                    where = "already stored"
                if stored is None:
                    conn.execute(
                        "INSERT INTO samples"
                        " (model, id, text, label, prediction_id, created, source)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            model,
                            sample_id,
                            sample.text,
                            sample.label,
                            sample.prediction_id,
                            created,
                            sample.source,
                        ),
                    )
                    posted[sample_id] = (sample.text, sample.label)
                    accepted += 1
                elif tuple(stored) == (sample.text, sample.label):
                    duplicates += 1
                else:
                    # Raising rolls back the rows this batch already inserted.
                    raise InvalidInput(
                        f"sample id {quote(sample_id)} of model {quote(model)} is {where} with a different"
                        " text or label; nothing from this batch was stored"
                    )
                ids.append(sample_id)
        return AddOutcome(accepted=accepted, duplicates=duplicates, ids=ids)

    def count(self, model: str, after_seq: int = 0) -> int:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM samples WHERE model = ? AND seq > ?", (model, after_seq)
            ).fetchone()
        return int(row[0])

    def samples(self, model: str, after_seq: int = 0, upto_seq: int | None = None) -> list[Sample]:
        query = f"SELECT {_SAMPLE_COLUMNS} FROM samples WHERE model = ? AND seq > ?"
        params: tuple[Any, ...] = (model, after_seq)
        if upto_seq is not None:
            query += " AND seq <= ?"
            params += (upto_seq,)
        with self._connection() as conn:
            rows = conn.execute(query + " ORDER BY seq", params).fetchall()
        return [Sample(*row) for row in rows]

    def distinct_count(self, model: str, after_seq: int = 0) -> int:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT COUNT(DISTINCT lower(trim(text))) FROM samples WHERE model = ? AND seq > ?",
                (model, after_seq),
            ).fetchone()
        return int(row[0])

    def sources(self, model: str) -> list[SourceSummary]:
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT source, COUNT(*), MIN(created), MAX(created), MIN(seq), MAX(seq)"
                " FROM samples WHERE model = ? GROUP BY source ORDER BY source",
                (model,),
            ).fetchall()
        return [SourceSummary(*row) for row in rows]

    def purge(self, model: str, source: str, since: float | None = None) -> tuple[int, int, int]:
        where = "model = ? AND source = ?"
        params: tuple[Any, ...] = (model, source)
        if since is not None:
            where += " AND created >= ?"
            params += (since,)
        with self._transaction() as conn:
            removed, first, last = conn.execute(
                f"SELECT COUNT(*), COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0) FROM samples"
                f" WHERE {where}",
                params,
            ).fetchone()
            conn.execute(f"DELETE FROM samples WHERE {where}", params)
        return int(removed), int(first), int(last)

    def last_seq(self, model: str) -> int:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM samples WHERE model = ?", (model,)
            ).fetchone()
        return int(row[0])

    def sample(self, model: str, sample_id: str) -> Sample | None:
        with self._connection() as conn:
            row = conn.execute(
                f"SELECT {_SAMPLE_COLUMNS} FROM samples WHERE model = ? AND id = ?",
                (model, sample_id),
            ).fetchone()
        return None if row is None else Sample(*row)

    def job(self, job_id: str) -> Job:
        with self._connection() as conn:
            return _job_or_not_found(conn, job_id)

    # --- jobs -----------------------------------------------------------------------------------

    def create(
        self,
        model: str,
        trigger: str,
        reason: str,
        base_version: int,
        samples_upto: int,
        attempt: int = 1,
    ) -> Job:
        job = Job(
            id=f"job-{secrets.token_hex(6)}",
            model=model,
            state=JobState.QUEUED,
            trigger=trigger,
            reason=reason,
            base_version=base_version,
            samples_upto=samples_upto,
            created=time.time(),
            attempt=attempt,
        )
        values = [_to_column(name, getattr(job, name)) for name in _JOB_FIELDS]
        with self._transaction() as conn:
            conn.execute(
                f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({', '.join('?' * len(values))})",
                values,
            )
        return job

    def update(self, job_id: str, **changes: Any) -> Job:
        unknown = sorted(set(changes) - _UPDATABLE)
        if unknown:
            raise ValueError(f"cannot update job field(s) {', '.join(unknown)}")
        columns = {name: _to_column(name, value) for name, value in changes.items()}
        with self._transaction() as conn:
            if columns:
                assignments = ", ".join(f'"{name}" = ?' for name in columns)
                cursor = conn.execute(
                    f"UPDATE jobs SET {assignments} WHERE id = ?", (*columns.values(), job_id)
                )
                if cursor.rowcount == 0:
                    raise NotFound(f"no job {quote(job_id)}")
            return _job_or_not_found(conn, job_id)

    def latest(self, model: str) -> Job | None:
        jobs = self.recent(model, limit=1)
        return jobs[0] if jobs else None

    def active(self, model: str) -> Job | None:
        with self._connection() as conn:
            row = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE model = ? AND state IN (?, ?)"
                " ORDER BY n DESC LIMIT 1",
                (model, *_UNFINISHED),
            ).fetchone()
        return None if row is None else _job(row)

    def recent(self, model: str, limit: int = 20) -> list[Job]:
        with self._connection() as conn:
            rows = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE model = ? ORDER BY n DESC LIMIT ?",
                # SQLite reads a negative LIMIT as "no limit".
                (model, max(limit, 0)),
            ).fetchall()
        return [_job(row) for row in rows]

    def fail_interrupted(self, error: str) -> list[Job]:
        with self._transaction() as conn:
            ids = [
                job_id
                for (job_id,) in conn.execute(
                    "SELECT id FROM jobs WHERE state IN (?, ?) ORDER BY n", _UNFINISHED
                )
            ]
            conn.execute(
                "UPDATE jobs SET state = ?, finished = ?, error = ? WHERE state IN (?, ?)",
                (JobState.FAILED.value, time.time(), error, *_UNFINISHED),
            )
            return [_job_or_not_found(conn, job_id) for job_id in ids]

    # --- plumbing -------------------------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn is None:
                raise Unavailable("the sample and job store is closed")
            yield self._conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One all-or-nothing write; IMMEDIATE takes the write lock up front so a concurrent
        writer in another process waits at BEGIN instead of failing halfway."""
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    # Under the write lock, so two processes opening a fresh file do not both create the schema.
    conn.execute("BEGIN IMMEDIATE")
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"{path} has schema version {version}; this loopserve understands up to"
                f" {SCHEMA_VERSION}"
            )
        for step in _MIGRATIONS[version:]:
            for statement in step:
                conn.execute(statement)
        if version != SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _to_column(name: str, value: Any) -> Any:
    if name == "state":
        return JobState(value).value  # a str outside the enum raises ValueError here
    if name == "gate":
        if value is None:
            return None
        if not isinstance(value, GateResult):
            raise TypeError(f"gate must be a GateResult or None, not {type(value).__name__}")
        return json.dumps(dataclasses.asdict(value), sort_keys=True)
    return value


def _job(row: Sequence[Any]) -> Job:
    fields = dict(zip(_JOB_FIELDS, row, strict=True))
    fields["state"] = JobState(fields["state"])
    if fields["gate"] is not None:
        fields["gate"] = GateResult(**json.loads(fields["gate"]))
    return Job(**fields)


def _job_or_not_found(conn: sqlite3.Connection, job_id: str) -> Job:
    row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise NotFound(f"no job {quote(job_id)}")
    return _job(row)


if TYPE_CHECKING:
    # Static proof that one SQLiteStore serves as both stores despite the shared ``get``.
    def _conforms(store: SQLiteStore) -> tuple[SampleStore, JobStore]:
        return store, store
