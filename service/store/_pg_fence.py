"""The purge check of a publish on PostgreSQL, shared by the store's pool and the trainer lease.

Purges of a model and publishes of its candidates take the same transaction-scoped advisory lock
on the model, so they are serialized: a purge that commits first is seen by the publish's check
(a later statement of the same transaction, so a later snapshot), and a purge that waits for the
lock finds the version already serving and names it.
"""

from __future__ import annotations

from typing import Any

import psycopg

from service.domain.provenance import PurgeRecord
from service.store._rows import (
    JOB_COLUMNS,
    PURGE_ROW,
    job_from_row,
    purge_from_row,
    refuse_purged,
)

Conn = psycopg.Connection[Any]
# First int4 of the two-key advisory locks that serialize the samples of one model (the second
# is the hash of the model's name); one-bigint locks (migrations, the lease) are a separate space.
MODEL_LOCK_SPACE = 0x6C6F6F70  # "loop"


def lock_model(conn: Conn, model: str) -> None:
    """Until the end of ``conn``'s transaction: no other add, purge or publish of ``model``."""
    conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (MODEL_LOCK_SPACE, model))


def purges(conn: Conn, model: str) -> list[PurgeRecord]:
    rows = conn.execute(
        f"SELECT {PURGE_ROW} FROM purges WHERE model = %s ORDER BY n", (model,)
    ).fetchall()
    return [purge_from_row(row) for row in rows]


def fence(conn: Conn, model: str, job_id: str) -> None:
    """Inside a transaction on ``conn``: take the model's lock, then raise DataPurged when a
    purge deleted samples of the job's data (a job this database does not know, such as the job
    of a version copied in from elsewhere, has no record to check)."""
    lock_model(conn, model)
    row = conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = %s", (job_id,)).fetchone()
    if row is not None:
        refuse_purged(job_from_row(row), purges(conn, model))
