"""SQLite's own settings and migrations; the behaviour both backends share is in
test_contract.py."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from service.domain.loop import NewSample
from service.errors import ConfigError, StorageFull
from service.store import SQLiteStore
from service.store._sqlite import MIGRATIONS, SCHEMA_VERSION

MODEL = "tiny"


def _batch(*ids: str, label: str = "greeting", source: str = "") -> list[NewSample]:
    return [NewSample(text=f"text of {i}", label=label, id=i, source=source) for i in ids]


def test_sqlite_file_is_wal_with_a_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "loopserve.db"
    store = SQLiteStore(path)
    try:
        # synchronous is per connection, so only the store's own connection can tell.
        assert store._conn is not None
        assert store._conn.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
        assert store._conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
    finally:
        store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    conn.close()


def test_sqlite_migrates_a_version_1_database_giving_old_samples_an_empty_source(
    tmp_path: Path,
) -> None:
    path = tmp_path / "loopserve.db"
    with sqlite3.connect(path) as conn:
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO samples (model, id, text, label, prediction_id, created)"
            " VALUES ('tiny', 'old', 'posted before provenance', 'greeting', '', 1.5)"
        )
    conn.close()

    store = SQLiteStore(path)
    try:
        (old,) = store.samples(MODEL)
        assert (old.id, old.text, old.source) == ("old", "posted before provenance", "")
        store.add(MODEL, _batch("new", source="team"))
        assert [(s.source, s.samples) for s in store.sources(MODEL)] == [("", 1), ("team", 1)]
        assert store.purge(MODEL, "team")[0] == 1
        assert [s.id for s in store.samples(MODEL)] == ["old"]
    finally:
        store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        columns = {row[1]: row for row in conn.execute("PRAGMA table_info(samples)")}
        assert columns["source"][2:5] == ("TEXT", 1, "''")  # type, not null, default
    conn.close()


def test_sqlite_migrates_a_database_from_before_data_records_keeping_its_jobs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "loopserve.db"
    with sqlite3.connect(path) as conn:
        for step in MIGRATIONS[:3]:
            for statement in step:
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 3")
        conn.execute(
            'INSERT INTO jobs (id, model, state, "trigger", reason, base_version, samples_upto,'
            " created, error, attempt) VALUES ('job-old', 'tiny', 'promoted', 'manual', '', 1, 5,"
            " 1.0, '', 1)"
        )
    conn.close()

    store = SQLiteStore(path)
    try:
        old = store.job("job-old")
        assert (old.state.value, old.data) == ("promoted", None)
        assert store.purges(MODEL) == [] and store.purged("job-old") is None
        assert store.trained_on(MODEL, "anyone") == []
    finally:
        store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    conn.close()


def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "loopserve.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(ConfigError, match="schema version"):
        SQLiteStore(path)


def _fill_up(store: SQLiteStore) -> None:
    """Let the database grow no more: SQLite then answers SQLITE_FULL, as on a full disk."""
    assert store._conn is not None
    (pages,) = store._conn.execute("PRAGMA page_count").fetchone()
    store._conn.execute(f"PRAGMA max_page_count = {pages}")


def _big_batch(prefix: str, count: int = 50) -> list[NewSample]:
    return [
        NewSample(text=f"{prefix} {i} " + "x" * 2000, label="greeting", id=f"{prefix}-{i}")
        for i in range(count)
    ]


def test_a_full_database_is_storage_full_and_keeps_what_it_had(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "loopserve.db")
    try:
        store.add(MODEL, _batch("a", "b"))
        _fill_up(store)
        with pytest.raises(StorageFull, match=r"^disk full: could not store the change to "):
            store.add(MODEL, _big_batch("late"))
        with pytest.raises(StorageFull, match="not at once"):
            store.create(MODEL, "manual", "a long reason " * 1000, 1, 2)
        # Nothing of the failed batch is stored, the earlier samples are intact.
        assert [s.id for s in store.samples(MODEL)] == ["a", "b"]
        assert store.latest(MODEL) is None
        assert store._conn is not None
        assert store._conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        # Space freed: the same batch goes in.
        store._conn.execute("PRAGMA max_page_count = 1073741823")
        assert store.add(MODEL, _big_batch("late")).accepted == 50
        assert store.count(MODEL) == 52
    finally:
        store.close()


def test_purged_content_leaves_the_database_file_and_its_log(tmp_path: Path) -> None:
    """Secure delete zeroes the freed pages (large content spills onto overflow pages) and the
    purge's checkpoint empties the log: no byte of the purged content stays on disk."""
    marker = b"qz7blobmarker"
    photo = marker + bytes(range(256)) * 40 + marker  # over several pages
    path = tmp_path / "loopserve.db"
    store = SQLiteStore(path)
    try:
        store.add(MODEL, [NewSample("", "red", data=photo, source="junk")])
        store.add(MODEL, _batch("kept", source="team"))
        assert marker in path.read_bytes() + path.with_name(path.name + "-wal").read_bytes()
        assert store.purge(MODEL, "junk")[0] == 1
        on_disk = [p.name for p in tmp_path.iterdir() if p.is_file() and marker in p.read_bytes()]
        assert on_disk == []
        assert [s.id for s in store.samples(MODEL)] == ["kept"]
    finally:
        store.close()


def test_sqlite_migrates_a_database_from_before_content(tmp_path: Path) -> None:
    path = tmp_path / "loopserve.db"
    with sqlite3.connect(path) as conn:
        for step in MIGRATIONS[:4]:
            for statement in step:
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 4")
        conn.execute(
            "INSERT INTO samples (model, id, text, label, prediction_id, created)"
            " VALUES ('tiny', 'old', 'a text', 'greeting', '', 1.5)"
        )
    conn.close()

    store = SQLiteStore(path)
    try:
        store.add(MODEL, [NewSample("", "red", data=b"an image", id="new")])
        assert [s.id for s in store.samples(MODEL)] == ["old", "new"]
        assert list(store.blobs(MODEL, [s.text for s in store.samples(MODEL)]).values()) == [
            b"an image"
        ]
    finally:
        store.close()
