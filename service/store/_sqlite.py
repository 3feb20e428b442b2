"""Samples, jobs, version records, the head row and drift marks in one SQLite database file
(``<state_dir>/loopserve.db``): the store of a single-process deployment.

Durability: WAL journal with ``synchronous=FULL`` fsyncs the log on every commit, so once
:meth:`SQLiteStore.add` returns the batch survives a process crash and a power loss alike.

Concurrency: one connection, serialized by a lock. SQLite admits a single writer at a time
anyway, every statement here is an index lookup or a short range scan, and one connection makes
:meth:`SQLiteStore.close` final: per-thread connections would outlive ``close`` in the threads of
gRPC and training pools that we do not own. ``busy_timeout`` only matters when another process
(an operator's ``sqlite3`` shell, a backup) holds the file. The head row is a compare-and-set
like PostgreSQL's; its watchers are called back from :meth:`SQLiteStore.move_head` itself, so
they see the changes made through the same store object only.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.domain.loop import AddOutcome, Job, NewSample, Sample, SourceSummary
from service.domain.provenance import PurgeRecord, first_removing
from service.errors import (
    ConfigError,
    Conflict,
    NotFound,
    StorageFull,
    Unavailable,
    quote,
)
from service.store._interface import AdaptationMark, HeadWatcher, TrainerLease, VersionRecord
from service.store._local import HeadCallbacks, LocalHeadWatcher, LocalLease
from service.store._rows import (
    JOB_COLUMNS,
    PURGE_COLUMNS,
    PURGE_ROW,
    SAMPLE_COLUMNS,
    UNFINISHED,
    SampleRow,
    cancel_changes,
    check_updatable,
    conflict,
    job_columns,
    job_from_row,
    new_job,
    purge_from_row,
    refuse_purged,
    trained_on,
    update_statement,
)
from service.store._sqlite_schema import MIGRATIONS, SCHEMA_VERSION, migrate

if TYPE_CHECKING:
    from service.store._interface import Store

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SQLiteStore"]

log = logging.getLogger(__name__)

_BUSY_TIMEOUT_MS = 5000
_KEYS_PER_QUERY = 500  # below SQLite's limit on the parameters of one statement


class SQLiteStore:
    """Every part of :class:`~service.store.Store` on one database file, for one process."""

    shared = False  # one process: the head row is read by nobody else

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
            # Deleted rows are overwritten with zeros, so that purged samples leave the file
            # (and the log, once checkpointed) instead of lingering in free pages.
            conn.execute("PRAGMA secure_delete = ON")
            migrate(conn, path)
        except BaseException:
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn
        self._head_callbacks = HeadCallbacks()

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
            for row in map(SampleRow.of, samples):
                sample = row.sample
                if row.id in posted:
                    stored: tuple[str, str] | None = posted[row.id]
                    where = "earlier in the batch"
                else:
                    stored = conn.execute(
                        "SELECT text, label FROM samples WHERE model = ? AND id = ?",
                        (model, row.id),
                    ).fetchone()
                    where = "already stored"
                if stored is None:
                    conn.execute(
                        "INSERT INTO samples"
                        " (model, id, text, label, prediction_id, created, source)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            model,
                            row.id,
                            row.text,
                            sample.label,
                            sample.prediction_id,
                            created,
                            sample.source,
                        ),
                    )
                    if sample.data:  # a stored sample's key always has its bytes
                        conn.execute(
                            "INSERT INTO blobs (model, key, data) VALUES (?, ?, ?)"
                            " ON CONFLICT (model, key) DO NOTHING",
                            (model, row.text, sample.data),
                        )
                    posted[row.id] = row.content
                    accepted += 1
                elif tuple(stored) == row.content:
                    duplicates += 1
                else:
                    # Raising rolls back the rows this batch already inserted.
                    raise conflict(model, row, where)
                ids.append(row.id)
        return AddOutcome(accepted=accepted, duplicates=duplicates, ids=ids)

    def blobs(self, model: str, keys: Iterable[str]) -> dict[str, bytes]:
        wanted = sorted(set(keys))
        found: dict[str, bytes] = {}
        with self._connection() as conn:
            for start in range(0, len(wanted), _KEYS_PER_QUERY):
                chunk = wanted[start : start + _KEYS_PER_QUERY]
                marks = ", ".join("?" * len(chunk))
                found.update(
                    (str(key), bytes(data))
                    for key, data in conn.execute(
                        f"SELECT key, data FROM blobs WHERE model = ? AND key IN ({marks})",
                        (model, *chunk),
                    )
                )
        return found

    def count(self, model: str, after_seq: int = 0) -> int:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM samples WHERE model = ? AND seq > ?", (model, after_seq)
            ).fetchone()
        return int(row[0])

    def samples(self, model: str, after_seq: int = 0, upto_seq: int | None = None) -> list[Sample]:
        query = f"SELECT {SAMPLE_COLUMNS} FROM samples WHERE model = ? AND seq > ?"
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
            if removed:
                # In the same transaction: no bytes outlive the last sample that used them.
                conn.execute(
                    "DELETE FROM blobs WHERE model = ?"
                    " AND key NOT IN (SELECT text FROM samples WHERE model = ?)",
                    (model, model),
                )
                conn.execute(
                    f"INSERT INTO purges ({PURGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (model, source, since, removed, first, last, time.time()),
                )
        if removed:
            self._checkpoint()
        return int(removed), int(first), int(last)

    def purges(self, model: str) -> list[PurgeRecord]:
        with self._connection() as conn:
            return _purges(conn, model)

    def delete_sample(self, model: str, source: str, sample_id: str) -> Sample | None:
        with self._transaction() as conn:
            row = conn.execute(
                f"SELECT {SAMPLE_COLUMNS} FROM samples WHERE model = ? AND id = ? AND source = ?",
                (model, sample_id, source),
            ).fetchone()
            if row is None:
                return None
            sample = Sample(*row)
            conn.execute("DELETE FROM samples WHERE model = ? AND seq = ?", (model, sample.seq))
            conn.execute(
                "DELETE FROM blobs WHERE model = ? AND key = ?"
                " AND key NOT IN (SELECT text FROM samples WHERE model = ?)",
                (model, sample.text, model),
            )
            conn.execute(
                f"INSERT INTO purges ({PURGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (model, source, sample.created, 1, sample.seq, sample.seq, time.time()),
            )
        self._checkpoint()
        return sample

    def _checkpoint(self) -> None:
        """Copy the log into the database file and empty it: until then the log keeps the
        pages that held the purged texts and content bytes."""
        with self._connection() as conn:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.warning(
                "%s: another connection kept the write-ahead log from being emptied after a "
                "purge; the purged samples stay in %s-wal until the next checkpoint",
                self.path, self.path.name,
            )  # fmt: skip

    def last_seq(self, model: str) -> int:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM samples WHERE model = ?", (model,)
            ).fetchone()
        return int(row[0])

    def sample(self, model: str, sample_id: str) -> Sample | None:
        with self._connection() as conn:
            row = conn.execute(
                f"SELECT {SAMPLE_COLUMNS} FROM samples WHERE model = ? AND id = ?",
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
        job = new_job(model, trigger, reason, base_version, samples_upto, attempt)
        values = job_columns(job)
        with self._transaction() as conn:
            conn.execute(
                f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES ({', '.join('?' * len(values))})",
                values,
            )
        return job

    def update(self, job_id: str, **changes: Any) -> Job:
        columns = check_updatable(changes)
        with self._transaction() as conn:
            _set_columns(conn, job_id, columns)
            return _job_or_not_found(conn, job_id)

    def request_cancel(self, job_id: str, error: str) -> Job | None:
        # An IMMEDIATE transaction: no other writer comes between the check and the change.
        with self._transaction() as conn:
            changes = cancel_changes(_job_or_not_found(conn, job_id), error)
            if changes is None:
                return None
            _set_columns(conn, job_id, check_updatable(changes))
            return _job_or_not_found(conn, job_id)

    def latest(self, model: str) -> Job | None:
        jobs = self.recent(model, limit=1)
        return jobs[0] if jobs else None

    def active(self, model: str) -> Job | None:
        with self._connection() as conn:
            row = conn.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE model = ? AND state IN (?, ?)"
                " ORDER BY n DESC LIMIT 1",
                (model, *UNFINISHED),
            ).fetchone()
        return None if row is None else job_from_row(row)

    def recent(self, model: str, limit: int = 20) -> list[Job]:
        with self._connection() as conn:
            rows = conn.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE model = ? ORDER BY n DESC LIMIT ?",
                # SQLite reads a negative LIMIT as "no limit".
                (model, max(limit, 0)),
            ).fetchall()
        return [job_from_row(row) for row in rows]

    def trained_on(self, model: str, source: str, since: float | None = None) -> list[Job]:
        with self._connection() as conn:
            rows = conn.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE model = ? AND data IS NOT NULL"
                " ORDER BY n DESC",
                (model,),
            ).fetchall()
        return trained_on([job_from_row(row) for row in rows], source, since)

    def purged(self, job_id: str) -> PurgeRecord | None:
        with self._connection() as conn:
            job = _job_or_not_found(conn, job_id)
            return first_removing(job.data, _purges(conn, job.model))

    # --- version records and the head row -------------------------------------------------------

    def add_version(self, record: VersionRecord) -> None:
        try:
            with self._transaction() as conn:
                conn.execute(
                    "INSERT INTO versions (model, version, digest, status, created)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (record.model, record.version, record.digest, record.status, record.created),
                )
        except sqlite3.IntegrityError:
            raise Conflict(
                f"version {record.version} of model {quote(record.model)} is already recorded"
            ) from None

    def versions(self, model: str) -> list[VersionRecord]:
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT model, version, digest, status, created FROM versions WHERE model = ?"
                " ORDER BY version",
                (model,),
            ).fetchall()
        return [VersionRecord(*row) for row in rows]

    def head(self, model: str) -> int | None:
        with self._connection() as conn:
            row = conn.execute("SELECT version FROM heads WHERE model = ?", (model,)).fetchone()
        return None if row is None else int(row[0])

    def move_head(self, model: str, version: int, expected: int | None, job: str = "") -> bool:
        with self._transaction() as conn:
            if job:
                _refuse_purged(conn, job)
            if expected is None:
                cursor = conn.execute(
                    "INSERT INTO heads (model, version, moved) VALUES (?, ?, ?)"
                    " ON CONFLICT (model) DO NOTHING",
                    (model, version, time.time()),
                )
            else:
                cursor = conn.execute(
                    "UPDATE heads SET version = ?, moved = ? WHERE model = ? AND version = ?",
                    (version, time.time(), model, expected),
                )
            moved = cursor.rowcount == 1
        if moved:
            # After the commit and outside the lock: a watcher may read the store.
            self._head_callbacks.changed(model)
        return moved

    @contextmanager
    def publish_fence(self, job: str) -> Iterator[None]:
        # The write lock: a purge (its own transaction) waits until the head has moved.
        with self._transaction() as conn:
            _refuse_purged(conn, job)
            yield

    def trainer_lease(self) -> TrainerLease:
        return LocalLease(self)

    def head_watcher(self) -> HeadWatcher:
        return LocalHeadWatcher(self._head_callbacks)

    # --- needs-adaptation marks -----------------------------------------------------------------

    def raise_mark(self, mark: AdaptationMark) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO marks (model, replica, since_seq, raised) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (model, replica) DO NOTHING",
                (mark.model, mark.replica, mark.since_seq, mark.raised),
            )

    def clear_mark(self, model: str, replica: str) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM marks WHERE model = ? AND replica = ?", (model, replica))

    def clear_marks(self, model: str) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM marks WHERE model = ?", (model,))

    def marks(self, model: str) -> list[AdaptationMark]:
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT model, replica, since_seq, raised FROM marks WHERE model = ?"
                " ORDER BY replica",
                (model,),
            ).fetchall()
        return [AdaptationMark(*row) for row in rows]

    # --- plumbing -------------------------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn is None:
                raise Unavailable("the sample and job store is closed")
            try:
                yield self._conn
            except sqlite3.OperationalError as exc:
                # SQLITE_FULL: the disk (or max_page_count) is full; the transaction is rolled
                # back, so nothing of the write is kept and the store works once space is freed.
                if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_FULL:
                    raise StorageFull(f"the change to {self.path.name}") from exc
                raise

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


def _purges(conn: sqlite3.Connection, model: str) -> list[PurgeRecord]:
    rows = conn.execute(
        f"SELECT {PURGE_ROW} FROM purges WHERE model = ? ORDER BY n", (model,)
    ).fetchall()
    return [purge_from_row(row) for row in rows]


def _refuse_purged(conn: sqlite3.Connection, job_id: str) -> None:
    row = conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is not None:  # a job this database does not know has no record to check
        job = job_from_row(row)
        refuse_purged(job, _purges(conn, job.model))


def _set_columns(conn: sqlite3.Connection, job_id: str, columns: dict[str, Any]) -> None:
    if columns:
        cursor = conn.execute(update_statement(columns, "?"), (*columns.values(), job_id))
        if cursor.rowcount == 0:
            raise NotFound(f"no job {quote(job_id)}")


def _job_or_not_found(conn: sqlite3.Connection, job_id: str) -> Job:
    row = conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise NotFound(f"no job {quote(job_id)}")
    return job_from_row(row)


if TYPE_CHECKING:
    # Static proof that SQLiteStore is a Store.
    def _conforms(store: SQLiteStore) -> Store:
        return store
