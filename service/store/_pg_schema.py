"""The PostgreSQL schema, as numbered migrations recorded in ``schema_migrations``.

Migration i (1-based) is applied once, in one transaction with its row in ``schema_migrations``.
Every process applies the missing ones at start under a transaction-scoped advisory lock, so two
processes starting together apply each step once. Append, never edit: released databases have
run the earlier steps.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from service.errors import ConfigError

# pg_advisory_xact_lock key of the migrations ("loopmigr"); the trainer lease has its own.
MIGRATION_LOCK_KEY = 0x6C6F_6F70_6D69_6772

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        # Identity columns: a seq is never reused, even after rows are deleted or a transaction
        # rolls back, because versions record the last seq they trained on.
        """
        CREATE TABLE samples (
            seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            model         TEXT NOT NULL,
            id            TEXT NOT NULL,
            text          TEXT NOT NULL,
            label         TEXT NOT NULL,
            prediction_id TEXT NOT NULL,
            created       DOUBLE PRECISION NOT NULL,
            source        TEXT NOT NULL DEFAULT '',
            UNIQUE (model, id)
        )
        """,
        "CREATE INDEX samples_by_model_seq ON samples (model, seq)",
        "CREATE INDEX samples_by_model_source ON samples (model, source, seq)",
        # ``n`` orders jobs by creation; ``created`` can tie within one clock tick.
        """
        CREATE TABLE jobs (
            n                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id                TEXT NOT NULL UNIQUE,
            model             TEXT NOT NULL,
            state             TEXT NOT NULL,
            "trigger"         TEXT NOT NULL,
            reason            TEXT NOT NULL,
            base_version      BIGINT NOT NULL,
            samples_upto      BIGINT NOT NULL,
            created           DOUBLE PRECISION NOT NULL,
            started           DOUBLE PRECISION,
            finished          DOUBLE PRECISION,
            candidate_version BIGINT,
            gate              TEXT,
            error             TEXT NOT NULL,
            attempt           BIGINT NOT NULL
        )
        """,
        "CREATE INDEX jobs_by_model ON jobs (model, n)",
        "CREATE INDEX jobs_by_state ON jobs (state)",
        """
        CREATE TABLE versions (
            model   TEXT NOT NULL,
            version BIGINT NOT NULL,
            digest  TEXT NOT NULL,
            status  TEXT NOT NULL,
            created DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (model, version)
        )
        """,
        """
        CREATE TABLE heads (
            model   TEXT PRIMARY KEY,
            version BIGINT NOT NULL,
            moved   DOUBLE PRECISION NOT NULL
        )
        """,
        """
        CREATE TABLE marks (
            model     TEXT NOT NULL,
            replica   TEXT NOT NULL,
            since_seq BIGINT NOT NULL,
            raised    DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (model, replica)
        )
        """,
    ),
    (
        # Provenance of a job's data (TrainingData as JSON; NULL until the job read it), and
        # the purges that removed samples, which a publish checks the job's data against.
        "ALTER TABLE jobs ADD COLUMN data TEXT",
        """
        CREATE TABLE purges (
            n         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            model     TEXT NOT NULL,
            source    TEXT NOT NULL,
            since     DOUBLE PRECISION,
            removed   BIGINT NOT NULL,
            first_seq BIGINT NOT NULL,
            last_seq  BIGINT NOT NULL,
            purged    DOUBLE PRECISION NOT NULL
        )
        """,
        "CREATE INDEX purges_by_model ON purges (model, n)",
    ),
    (
        # The bytes of samples of binary inputs (images), once per model; a sample row's text
        # holds the key. A purge deletes the ones no sample references any more.
        """
        CREATE TABLE blobs (
            model TEXT NOT NULL,
            key   TEXT NOT NULL,
            data  BYTEA NOT NULL,
            PRIMARY KEY (model, key)
        )
        """,
        # Encoded images are compressed already: TOAST stores them out of line, as they are.
        "ALTER TABLE blobs ALTER COLUMN data SET STORAGE EXTERNAL",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: psycopg.Connection[Any], where: str) -> None:
    """Bring the database on ``conn`` (autocommit) to :data:`SCHEMA_VERSION`."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, applied DOUBLE PRECISION NOT NULL)"
        )
        row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"the database at {where} has schema version {version}; this loopserve"
                f" understands up to {SCHEMA_VERSION}"
            )
        for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in step:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, applied) VALUES (%s, %s)",
                (number, time.time()),
            )
