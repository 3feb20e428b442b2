"""Samples, jobs, version records, the head row and drift marks in PostgreSQL: the store that
serving replicas and the trainer of a scale-out deployment share.

Durability: every write is one transaction, committed before the method returns; with the
server's default ``synchronous_commit = on`` an acknowledged sample survives a crash of either
side.

Concurrency: a small connection pool (every connection is checked before it is handed out, so
the store recovers by itself after PostgreSQL restarts). Reads, ``add`` (its ids are fixed
before the first try, so a repeat only finds duplicates) and the other idempotent writes are
retried once on a fresh connection when their connection drops. Samples of one model are added
and purged under a transaction-scoped advisory lock on the model, so seq order is commit order:
a reader that has seen seq n never later finds a new sample below n (a sequence alone would
hand out numbers in the order transactions start, not the order they commit). A head move is a
compare-and-set in one transaction with its NOTIFY; concurrent moves from the same expected
version are serialized by the row lock and exactly one succeeds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
import psycopg_pool

from service.domain.loop import AddOutcome, Job, NewSample, Sample, SourceSummary
from service.domain.provenance import PurgeRecord, first_removing
from service.errors import Conflict, NotFound, Unavailable, quote
from service.store._interface import AdaptationMark, HeadWatcher, TrainerLease, VersionRecord
from service.store._pg_conn import HEAD_CHANNEL, KEEPALIVES, Target
from service.store._pg_fence import fence, lock_model, purges
from service.store._pg_lease import PostgresLease
from service.store._pg_schema import migrate
from service.store._pg_watch import PostgresHeadWatcher
from service.store._rows import (
    JOB_COLUMNS,
    PURGE_COLUMNS,
    SAMPLE_COLUMNS,
    UNFINISHED,
    SampleRow,
    cancel_changes,
    check_updatable,
    conflict,
    job_columns,
    job_from_row,
    new_job,
    trained_on,
    update_statement,
)

if TYPE_CHECKING:
    from service.store._interface import Store

T = TypeVar("T")
Conn = psycopg.Connection[Any]

APPLICATION_NAME = "loopserve"
POOL_MIN, POOL_MAX = 1, 4
# Texts compare byte for byte, case-folded in ASCII only and trimmed of spaces only: exactly
# SQLite's lower(trim(text)), whatever the database's collation.
_DISTINCT_TEXT = 'lower(trim(text) COLLATE "C")'


class PostgresStore:
    """Every part of :class:`~service.store.Store` in one PostgreSQL database; thread-safe."""

    shared = True  # replicas and the trainer read the head row

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self._target = Target(url)  # ConfigError for a bad URL, before any connection
        self._timeout = timeout
        with self._target.connect(f"{APPLICATION_NAME}-migrate") as conn:
            try:
                migrate(conn, self._target.redacted)
            except psycopg.Error as exc:
                raise self._target.error(exc) from None
        self._pool: psycopg_pool.ConnectionPool[Conn] = psycopg_pool.ConnectionPool(
            url,
            min_size=POOL_MIN,
            max_size=POOL_MAX,
            kwargs={
                "autocommit": True,
                "application_name": APPLICATION_NAME,
                "connect_timeout": max(1, int(timeout)),
                **KEEPALIVES,
            },
            check=psycopg_pool.ConnectionPool.check_connection,
            timeout=timeout,
            name="loopserve",
            open=False,
        )
        self._pool.open(wait=False)
        self._closed = False

    def close(self) -> None:
        self._closed = True
        self._pool.close()

    # --- samples --------------------------------------------------------------------------------

    def add(self, model: str, samples: Sequence[NewSample]) -> AddOutcome:
        if not samples:
            return AddOutcome(accepted=0, duplicates=0, ids=[])
        posted = [SampleRow.of(sample) for sample in samples]
        created = time.time()

        def work(conn: Conn) -> AddOutcome:
            self._lock_model(conn, model)
            first: dict[str, SampleRow] = {}  # each id's first occurrence, in post order
            for row in posted:
                first.setdefault(row.id, row)
            batch = list(first.values())
            rows = conn.execute(
                "INSERT INTO samples (model, id, text, label, prediction_id, created, source)"
                " SELECT %s, u.id, u.text, u.label, u.prediction_id, %s, u.source"
                " FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[])"
                " WITH ORDINALITY AS u(id, text, label, prediction_id, source, n)"
                # In post order, so that seqs follow it as they do in SQLite.
                " ORDER BY u.n"
                " ON CONFLICT (model, id) DO NOTHING RETURNING id",
                (
                    model,
                    created,
                    [r.id for r in batch],
                    [r.text for r in batch],
                    [r.sample.label for r in batch],
                    [r.sample.prediction_id for r in batch],
                    [r.sample.source for r in batch],
                ),
            ).fetchall()
            inserted = {row[0] for row in rows}
            self._add_blobs(conn, model, [r for r in batch if r.id in inserted])
            stored = {
                row[0]: (row[1], row[2])
                for row in conn.execute(
                    "SELECT id, text, label FROM samples WHERE model = %s AND id = ANY(%s)",
                    (model, [i for i in first if i not in inserted]),
                )
            }
            # Raising rolls back the rows this batch already inserted.
            return _outcome(model, posted, inserted, stored)

        return self._write(work, retry=True)

    @staticmethod
    def _add_blobs(conn: Conn, model: str, rows: list[SampleRow]) -> None:
        """The content of the samples just inserted (a stored key always has its bytes)."""
        content = {r.text: r.sample.data for r in rows if r.sample.data}
        if content:
            conn.execute(
                "INSERT INTO blobs (model, key, data)"
                " SELECT %s, u.key, u.data FROM unnest(%s::text[], %s::bytea[]) AS u(key, data)"
                " ON CONFLICT (model, key) DO NOTHING",
                (model, list(content), list(content.values())),
            )

    def blobs(self, model: str, keys: Iterable[str]) -> dict[str, bytes]:
        rows = self._all(
            "SELECT key, data FROM blobs WHERE model = %s AND key = ANY(%s)",
            (model, sorted(set(keys))),
        )
        return {str(key): bytes(data) for key, data in rows}

    def sample(self, model: str, sample_id: str) -> Sample | None:
        row = self._one(
            f"SELECT {SAMPLE_COLUMNS} FROM samples WHERE model = %s AND id = %s", (model, sample_id)
        )
        return None if row is None else Sample(*row)

    def count(self, model: str, after_seq: int = 0) -> int:
        return self._int(
            "SELECT COUNT(*) FROM samples WHERE model = %s AND seq > %s", (model, after_seq)
        )

    def distinct_count(self, model: str, after_seq: int = 0) -> int:
        return self._int(
            f"SELECT COUNT(DISTINCT {_DISTINCT_TEXT}) FROM samples WHERE model = %s AND seq > %s",
            (model, after_seq),
        )

    def samples(self, model: str, after_seq: int = 0, upto_seq: int | None = None) -> list[Sample]:
        query = f"SELECT {SAMPLE_COLUMNS} FROM samples WHERE model = %s AND seq > %s"
        params: tuple[Any, ...] = (model, after_seq)
        if upto_seq is not None:
            query += " AND seq <= %s"
            params += (upto_seq,)
        return [Sample(*row) for row in self._all(query + " ORDER BY seq", params)]

    def last_seq(self, model: str) -> int:
        return self._int("SELECT COALESCE(MAX(seq), 0) FROM samples WHERE model = %s", (model,))

    def sources(self, model: str) -> list[SourceSummary]:
        rows = self._all(
            "SELECT source, COUNT(*), MIN(created), MAX(created), MIN(seq), MAX(seq)"
            ' FROM samples WHERE model = %s GROUP BY source ORDER BY source COLLATE "C"',
            (model,),
        )
        return [SourceSummary(*row) for row in rows]

    def purge(self, model: str, source: str, since: float | None = None) -> tuple[int, int, int]:
        where = "model = %s AND source = %s"
        params: tuple[Any, ...] = (model, source)
        if since is not None:
            where += " AND created >= %s"
            params += (since,)

        def work(conn: Conn) -> tuple[int, int, int]:
            self._lock_model(conn, model)
            row = conn.execute(
                f"WITH gone AS (DELETE FROM samples WHERE {where} RETURNING seq)"
                " SELECT COUNT(*), COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0) FROM gone",
                params,
            ).fetchone()
            assert row is not None
            removed, first, last = int(row[0]), int(row[1]), int(row[2])
            if removed:
                # In the same transaction: no bytes outlive the last sample that used them.
                conn.execute(
                    "DELETE FROM blobs WHERE model = %s"
                    " AND key NOT IN (SELECT text FROM samples WHERE model = %s)",
                    (model, model),
                )
                conn.execute(
                    f"INSERT INTO purges ({PURGE_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (model, source, since, removed, first, last, time.time()),
                )
            return removed, first, last

        # Not retried: a repeat after a lost commit would report nothing removed.
        return self._write(work, retry=False)

    def purges(self, model: str) -> list[PurgeRecord]:
        return self._read(lambda conn: purges(conn, model))

    def delete_sample(self, model: str, source: str, sample_id: str) -> Sample | None:
        def work(conn: Conn) -> Sample | None:
            self._lock_model(conn, model)
            row = conn.execute(
                f"DELETE FROM samples WHERE model = %s AND id = %s AND source = %s"
                f" RETURNING {SAMPLE_COLUMNS}",
                (model, sample_id, source),
            ).fetchone()
            if row is None:
                return None
            sample = Sample(*row)
            conn.execute(
                "DELETE FROM blobs WHERE model = %s AND key = %s"
                " AND key NOT IN (SELECT text FROM samples WHERE model = %s)",
                (model, sample.text, model),
            )
            conn.execute(
                f"INSERT INTO purges ({PURGE_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (model, source, sample.created, 1, sample.seq, sample.seq, time.time()),
            )
            return sample

        # Not retried: a repeat after a lost commit would find nothing to delete.
        return self._write(work, retry=False)

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

        def work(conn: Conn) -> Job:
            # ON CONFLICT: a retry after a lost commit finds its own row and changes nothing.
            conn.execute(
                f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES ({', '.join(['%s'] * len(values))})"
                " ON CONFLICT (id) DO NOTHING",
                values,
            )
            return job

        return self._write(work, retry=True)

    def update(self, job_id: str, **changes: Any) -> Job:
        columns = check_updatable(changes)

        def work(conn: Conn) -> Job:
            _set_columns(conn, job_id, columns)
            return _job_or_not_found(conn, job_id)

        # Setting the same values twice is the same as once.
        return self._write(work, retry=True)

    def request_cancel(self, job_id: str, error: str) -> Job | None:
        def work(conn: Conn) -> Job | None:
            # FOR UPDATE: the job cannot end, nor be cancelled by another call, between the check
            # and the change (the runner's final update waits for this row lock).
            changes = cancel_changes(_job_or_not_found(conn, job_id, lock=True), error)
            if changes is None:
                return None
            _set_columns(conn, job_id, check_updatable(changes))
            return _job_or_not_found(conn, job_id)

        # Not retried: after a lost commit a second try would find a queued job it had just
        # failed, and answer that the job had already ended.
        return self._write(work, retry=False)

    def job(self, job_id: str) -> Job:
        return self._read(lambda conn: _job_or_not_found(conn, job_id))

    def latest(self, model: str) -> Job | None:
        jobs = self.recent(model, limit=1)
        return jobs[0] if jobs else None

    def active(self, model: str) -> Job | None:
        row = self._one(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE model = %s AND state IN (%s, %s)"
            " ORDER BY n DESC LIMIT 1",
            (model, *UNFINISHED),
        )
        return None if row is None else job_from_row(row)

    def recent(self, model: str, limit: int = 20) -> list[Job]:
        rows = self._all(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE model = %s ORDER BY n DESC LIMIT %s",
            (model, max(limit, 0)),
        )
        return [job_from_row(row) for row in rows]

    def trained_on(self, model: str, source: str, since: float | None = None) -> list[Job]:
        rows = self._all(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE model = %s AND data IS NOT NULL ORDER BY n DESC",
            (model,),
        )
        return trained_on([job_from_row(row) for row in rows], source, since)

    def purged(self, job_id: str) -> PurgeRecord | None:
        def work(conn: Conn) -> PurgeRecord | None:
            job = _job_or_not_found(conn, job_id)
            return first_removing(job.data, purges(conn, job.model))

        return self._read(work)

    # --- version records and the head row -------------------------------------------------------

    def add_version(self, record: VersionRecord) -> None:
        def work(conn: Conn) -> None:
            cursor = conn.execute(
                "INSERT INTO versions (model, version, digest, status, created)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (model, version) DO NOTHING",
                (record.model, record.version, record.digest, record.status, record.created),
            )
            if cursor.rowcount == 0:
                raise Conflict(
                    f"version {record.version} of model {quote(record.model)} is already recorded"
                )

        self._write(work, retry=False)

    def versions(self, model: str) -> list[VersionRecord]:
        rows = self._all(
            "SELECT model, version, digest, status, created FROM versions WHERE model = %s"
            " ORDER BY version",
            (model,),
        )
        return [VersionRecord(*row) for row in rows]

    def head(self, model: str) -> int | None:
        row = self._one("SELECT version FROM heads WHERE model = %s", (model,))
        return None if row is None else int(row[0])

    def move_head(self, model: str, version: int, expected: int | None, job: str = "") -> bool:
        def work(conn: Conn) -> bool:
            if job:
                fence(conn, model, job)
            if expected is None:
                cursor = conn.execute(
                    "INSERT INTO heads (model, version, moved) VALUES (%s, %s, %s)"
                    " ON CONFLICT (model) DO NOTHING",
                    (model, version, time.time()),
                )
            else:
                cursor = conn.execute(
                    "UPDATE heads SET version = %s, moved = %s WHERE model = %s AND version = %s",
                    (version, time.time(), model, expected),
                )
            if cursor.rowcount != 1:
                return False
            # Delivered at commit, and only if the move commits.
            conn.execute("SELECT pg_notify(%s, %s)", (HEAD_CHANNEL, model))
            return True

        # Not retried: a repeat after a lost commit would report the move as refused.
        return self._write(work, retry=False)

    @contextmanager
    def publish_fence(self, job: str) -> Iterator[None]:
        # A transaction holding the model's lock: a purge waits until the head has moved.
        if self._closed:
            raise Unavailable("the sample and job store is closed")
        try:
            with self._pool.connection() as conn, conn.transaction():
                row = conn.execute("SELECT model FROM jobs WHERE id = %s", (job,)).fetchone()
                if row is not None:  # else no record to check
                    fence(conn, str(row[0]), job)
                yield
        except psycopg_pool.PoolTimeout as exc:
            raise self._target.unavailable(
                f"no connection within {self._timeout:g} s", exc
            ) from None
        except psycopg.Error as exc:
            raise self._target.error(exc) from None

    def trainer_lease(self) -> TrainerLease:
        return PostgresLease(self._target)

    def head_watcher(self) -> HeadWatcher:
        return PostgresHeadWatcher(self._target)

    # --- needs-adaptation marks -----------------------------------------------------------------

    def raise_mark(self, mark: AdaptationMark) -> None:
        self._execute(
            "INSERT INTO marks (model, replica, since_seq, raised) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (model, replica) DO NOTHING",
            (mark.model, mark.replica, mark.since_seq, mark.raised),
        )

    def clear_mark(self, model: str, replica: str) -> None:
        self._execute("DELETE FROM marks WHERE model = %s AND replica = %s", (model, replica))

    def clear_marks(self, model: str) -> None:
        self._execute("DELETE FROM marks WHERE model = %s", (model,))

    def marks(self, model: str) -> list[AdaptationMark]:
        rows = self._all(
            "SELECT model, replica, since_seq, raised FROM marks WHERE model = %s"
            ' ORDER BY replica COLLATE "C"',
            (model,),
        )
        return [AdaptationMark(*row) for row in rows]

    # --- plumbing -------------------------------------------------------------------------------

    def _one(self, query: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        return self._read(lambda conn: conn.execute(query, params).fetchone())

    def _all(self, query: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self._read(lambda conn: conn.execute(query, params).fetchall())

    def _int(self, query: str, params: Sequence[Any]) -> int:
        row = self._one(query, params)
        assert row is not None
        return int(row[0])

    def _execute(self, query: str, params: Sequence[Any]) -> None:
        """An idempotent write of one statement."""

        def work(conn: Conn) -> None:
            conn.execute(query, params)

        self._write(work, retry=True)

    def _read(self, work: Callable[[Conn], T]) -> T:
        return self._run(work, transaction=False, retry=True)

    def _write(self, work: Callable[[Conn], T], *, retry: bool) -> T:
        return self._run(work, transaction=True, retry=retry)

    def _run(self, work: Callable[[Conn], T], *, transaction: bool, retry: bool) -> T:
        if self._closed:
            raise Unavailable("the sample and job store is closed")
        tries = 2 if retry else 1
        for attempt in range(1, tries + 1):
            try:
                with self._pool.connection() as conn:
                    if not transaction:
                        return work(conn)
                    with conn.transaction():
                        return work(conn)
            except psycopg_pool.PoolTimeout as exc:
                raise self._target.unavailable(
                    f"no connection within {self._timeout:g} s", exc
                ) from None
            except psycopg.OperationalError as exc:
                # The pool discards the broken connection; the next try gets a fresh one. A full
                # disk is no broken connection: another try would fail the same way.
                if attempt == tries or self._closed or isinstance(exc, psycopg.errors.DiskFull):
                    raise self._target.error(exc) from None
            except psycopg.Error as exc:
                raise self._target.error(exc) from None
        raise AssertionError("unreachable")

    @staticmethod
    def _lock_model(conn: Conn, model: str) -> None:
        lock_model(conn, model)


def _outcome(
    model: str,
    posted: list[SampleRow],
    inserted: set[str],
    stored: dict[str, tuple[str, str]],
) -> AddOutcome:
    """What the batch did, judged in post order exactly as SQLiteStore judges it."""
    accepted = duplicates = 0
    seen: dict[str, tuple[str, str]] = {}
    for row in posted:
        if row.id in seen:
            earlier, where = seen[row.id], "earlier in the batch"
        elif row.id in inserted:
            seen[row.id] = row.content
            accepted += 1
            continue
        else:
            earlier, where = stored[row.id], "already stored"
        if earlier != row.content:
            raise conflict(model, row, where)
        duplicates += 1
    return AddOutcome(accepted=accepted, duplicates=duplicates, ids=[r.id for r in posted])


def _set_columns(conn: Conn, job_id: str, columns: dict[str, Any]) -> None:
    if columns:
        cursor = conn.execute(update_statement(columns, "%s"), (*columns.values(), job_id))
        if cursor.rowcount == 0:
            raise NotFound(f"no job {quote(job_id)}")


def _job_or_not_found(conn: Conn, job_id: str, *, lock: bool = False) -> Job:
    query = f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = %s" + (" FOR UPDATE" if lock else "")
    row = conn.execute(query, (job_id,)).fetchone()
    if row is None:
        raise NotFound(f"no job {quote(job_id)}")
    return job_from_row(row)


if TYPE_CHECKING:
    # Static proof that PostgresStore is a Store.
    def _conforms(store: PostgresStore) -> Store:
        return store
