"""The SQLite schema, as migration steps.

Migration i takes the schema from version i to i + 1; the database records its version in
``PRAGMA user_version``. Append, never edit: released databases have run the earlier steps.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from service.errors import ConfigError

MIGRATIONS: tuple[tuple[str, ...], ...] = (
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
    (
        # Version records, the head row (the serving version) and the shared drift marks.
        """
        CREATE TABLE versions (
            model   TEXT NOT NULL,
            version INTEGER NOT NULL,
            digest  TEXT NOT NULL,
            status  TEXT NOT NULL,
            created REAL NOT NULL,
            PRIMARY KEY (model, version)
        )
        """,
        """
        CREATE TABLE heads (
            model   TEXT PRIMARY KEY,
            version INTEGER NOT NULL,
            moved   REAL NOT NULL
        )
        """,
        """
        CREATE TABLE marks (
            model     TEXT NOT NULL,
            replica   TEXT NOT NULL,
            since_seq INTEGER NOT NULL,
            raised    REAL NOT NULL,
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
            n         INTEGER PRIMARY KEY AUTOINCREMENT,
            model     TEXT NOT NULL,
            source    TEXT NOT NULL,
            since     REAL,
            removed   INTEGER NOT NULL,
            first_seq INTEGER NOT NULL,
            last_seq  INTEGER NOT NULL,
            purged    REAL NOT NULL
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
            data  BLOB NOT NULL,
            PRIMARY KEY (model, key)
        )
        """,
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    # Under the write lock, so two processes opening a fresh file do not both create the schema.
    conn.execute("BEGIN IMMEDIATE")
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"{path} has schema version {version}; this loopserve understands up to"
                f" {SCHEMA_VERSION}"
            )
        for step in MIGRATIONS[version:]:
            for statement in step:
                conn.execute(statement)
        if version != SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
