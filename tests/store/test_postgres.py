"""PostgreSQL's own behaviour: migrations, the trainer lease, head watching, lost connections,
restarts and error messages. The behaviour both backends share is in test_contract.py."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
from pg import PostgresServer
from waiting import wait_until

from service.domain.loop import NewSample
from service.errors import ConfigError, LoopserveError, StorageFull, Unavailable
from service.store import PostgresStore
from service.store._pg_lease import PostgresLease
from service.store._pg_schema import MIGRATIONS, SCHEMA_VERSION

MODEL = "tiny"


@pytest.fixture
def store(database_url: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(database_url)
    yield opened
    opened.close()


class Heard:
    """The models a head watcher was called back with."""

    def __init__(self) -> None:
        self.models: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, model: str) -> None:
        with self._lock:
            self.models.append(model)

    def count(self, model: str) -> int:
        with self._lock:
            return self.models.count(model)


# --- migrations -----------------------------------------------------------------------------------


def test_two_stores_opening_together_apply_the_migrations_once(database_url: str) -> None:
    barrier = threading.Barrier(4)
    opened: list[PostgresStore] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            barrier.wait()
            opened.append(PostgresStore(database_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    try:
        assert errors == [] and len(opened) == 4
        opened[0].add(MODEL, [NewSample("hello", "greeting", "a")])
        assert opened[3].count(MODEL) == 1
    finally:
        for store in opened:
            store.close()
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert rows == [(v,) for v in range(1, SCHEMA_VERSION + 1)]


def test_a_newer_schema_is_refused(database_url: str) -> None:
    PostgresStore(database_url).close()
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (%s, 0)", (SCHEMA_VERSION + 1,))
    with pytest.raises(ConfigError, match="schema version"):
        PostgresStore(database_url)


def test_a_database_from_before_data_records_is_migrated_keeping_its_jobs(
    database_url: str,
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied DOUBLE PRECISION"
            " NOT NULL)"
        )
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations VALUES (1, 0)")
        conn.execute(
            'INSERT INTO jobs (id, model, state, "trigger", reason, base_version, samples_upto,'
            " created, error, attempt) VALUES ('job-old', %s, 'promoted', 'manual', '', 1, 5, 1.0,"
            " '', 1)",
            (MODEL,),
        )
    store = PostgresStore(database_url)
    try:
        old = store.job("job-old")
        assert (old.state.value, old.data) == ("promoted", None)
        assert store.purges(MODEL) == [] and store.purged("job-old") is None
        assert store.trained_on(MODEL, "anyone") == []
    finally:
        store.close()


# --- the trainer lease ----------------------------------------------------------------------------


def test_only_one_lease_is_held_until_its_holder_closes(database_url: str) -> None:
    stores = [PostgresStore(database_url) for _ in range(2)]
    first, second = (store.trainer_lease() for store in stores)
    try:
        assert first.try_acquire() is True
        assert second.try_acquire() is False
        assert second.held() is False
        with pytest.raises(Unavailable, match="trainer lease"):
            second.move_head(MODEL, 1, expected=None)
        assert stores[0].head(MODEL) is None

        first.close()
        assert second.try_acquire() is True
        assert second.move_head(MODEL, 1, expected=None) is True
        assert first.try_acquire() is False  # a closed lease may try again, as a standby
    finally:
        first.close()
        second.close()
        for store in stores:
            store.close()


def test_a_terminated_lease_session_cannot_move_the_head(
    store: PostgresStore, postgres_server: PostgresServer
) -> None:
    lease = store.trainer_lease()
    try:
        assert lease.try_acquire() is True
        assert lease.move_head(MODEL, 1, expected=None) is True

        assert postgres_server.terminate("loopserve-trainer") == 1

        assert lease.held() is False
        with pytest.raises(Unavailable, match="trainer lease") as refused:
            lease.move_head(MODEL, 2, expected=1)
        assert "not moved" in str(refused.value)
        assert store.head(MODEL) == 1
        # A standby takes over; the old holder, reconnected, is now the one refused.
        standby = store.trainer_lease()
        try:
            assert standby.try_acquire() is True
            assert lease.try_acquire() is False
            assert standby.move_head(MODEL, 2, expected=1) is True
        finally:
            standby.close()
        assert lease.try_acquire() is True
    finally:
        lease.close()


def test_the_lease_session_is_named_and_keeps_alive(
    store: PostgresStore, postgres_server: PostgresServer
) -> None:
    lease = store.trainer_lease()
    try:
        assert lease.try_acquire()
        with psycopg.connect(postgres_server.admin_url, autocommit=True) as admin:
            rows = admin.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                " WHERE a.application_name = 'loopserve-trainer' AND l.locktype = 'advisory'"
            ).fetchone()
        assert rows == (1,)
        assert isinstance(lease, PostgresLease)
        conn = lease._conn  # the dedicated connection's settings
        assert conn is not None and conn.info.get_parameters()["keepalives_idle"] == "10"
    finally:
        lease.close()


# --- head watching --------------------------------------------------------------------------------


def _listening(store: PostgresStore, heard: Heard, model: str) -> None:
    """Move ``model``'s head until the watcher hears of it: it has connected and listens."""
    version = store.head(model) or 0
    for _ in range(100):
        assert store.move_head(model, version + 1, expected=version or None)
        version += 1
        with contextlib.suppress(AssertionError):  # not listening yet: move again
            wait_until(lambda: heard.count(model) > 0, 0.1)
            return
    raise AssertionError("the head watcher never heard a move")


def test_a_watcher_hears_moves_made_through_other_stores_and_the_lease(
    store: PostgresStore, database_url: str
) -> None:
    heard = Heard()
    watcher = store.head_watcher()
    watcher.start(heard)
    other = PostgresStore(database_url)
    lease = other.trainer_lease()
    try:
        _listening(store, heard, "warmup")
        assert other.move_head(MODEL, 1, expected=None)
        wait_until(lambda: heard.count(MODEL) == 1)
        assert lease.try_acquire() and lease.move_head(MODEL, 2, expected=1)
        wait_until(lambda: heard.count(MODEL) == 2)
        assert other.move_head(MODEL, 3, expected=1) is False  # refused moves are not news
        assert other.move_head("later", 1, expected=None)
        wait_until(lambda: heard.count("later") == 1)  # news comes in order: after any of MODEL's
        assert heard.count(MODEL) == 2
    finally:
        lease.close()
        other.close()
        watcher.stop()


def test_a_watcher_reconnects_and_asks_for_a_check_of_every_model(
    store: PostgresStore, postgres_server: PostgresServer
) -> None:
    heard = Heard()
    watcher = store.head_watcher()
    watcher.start(heard)
    try:
        _listening(store, heard, "warmup")
        assert heard.count("") == 0

        assert postgres_server.terminate("loopserve-listen") == 1
        wait_until(lambda: heard.count("") == 1)

        assert store.move_head(MODEL, 1, expected=None)
        wait_until(lambda: heard.count(MODEL) == 1)
        assert heard.count("") == 1
    finally:
        started = time.monotonic()
        watcher.stop()
        assert time.monotonic() - started < 2


# --- lost connections, restarts, errors -----------------------------------------------------------


def test_a_dropped_pool_connection_is_replaced(
    store: PostgresStore, postgres_server: PostgresServer
) -> None:
    store.add(MODEL, [NewSample("hello", "greeting", "a")])
    assert postgres_server.terminate("loopserve") >= 1
    assert store.count(MODEL) == 1
    assert store.add(MODEL, [NewSample("hi", "greeting", "b")]).accepted == 1


def test_the_store_works_again_after_postgres_restarts(
    store: PostgresStore, postgres_server: PostgresServer
) -> None:
    store.add(MODEL, [NewSample("hello", "greeting", "a")])
    store.move_head(MODEL, 1, expected=None)

    postgres_server.restart()

    # The first call may see the restart; the next one works.
    with contextlib.suppress(Unavailable):
        store.count(MODEL)
    assert store.count(MODEL) == 1
    assert store.add(MODEL, [NewSample("hi", "greeting", "b")]).accepted == 1
    assert store.move_head(MODEL, 2, expected=1) is True


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "make_url",
    [
        pytest.param(
            lambda server, db: server.url(db, password="wrong-s3cret"), id="wrong-password"
        ),
        pytest.param(
            lambda server, db: f"postgresql://postgres:wrong-s3cret@127.0.0.1:{_closed_port()}/x",
            id="unreachable",
        ),
        pytest.param(
            lambda server, db: (
                f"postgresql://postgres@127.0.0.1:{server.port}/x?password=wrong-s3cret"
            ),
            id="password-parameter",
        ),
    ],
)
def test_connection_errors_are_unavailable_and_hide_the_password(
    postgres_server: PostgresServer,
    database_url: str,
    make_url: Callable[[PostgresServer, str], str],
) -> None:
    url = make_url(postgres_server, database_url.rsplit("/", 1)[1])
    with pytest.raises(Unavailable) as failed:
        PostgresStore(url)
    assert "wrong-s3cret" not in str(failed.value)
    assert "***" in str(failed.value)


@pytest.mark.parametrize(
    "url",
    [
        "mysql://root:wrong-s3cret@localhost/db",
        "postgresql://root:wrong-s3cret@localhost/db?bogus=1",
        "postgresql://root:wrong-s3cret@localhost:notaport/db",
    ],
    ids=["scheme", "parameter", "port"],
)
def test_a_bad_url_is_a_config_error_that_hides_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as failed:
        PostgresStore(url)
    assert "wrong-s3cret" not in str(failed.value)


def test_errors_are_loopserve_errors(store: PostgresStore) -> None:
    # PostgreSQL refuses NUL characters in text: the caller's data, so InvalidInput.
    with pytest.raises(LoopserveError):
        store.add(MODEL, [NewSample("nul \x00 char", "greeting", "a")])
    assert store.count(MODEL) == 0


# --- a full disk ------------------------------------------------------------------------------------


def test_a_full_disk_is_storage_full_and_keeps_what_it_had(
    store: PostgresStore, database_url: str
) -> None:
    store.add(MODEL, [NewSample(text="kept", label="greeting", id="a")])
    # PostgreSQL answers SQLSTATE 53100 when it cannot extend a file; a trigger raises the same
    # error, through the same driver path, without filling a disk. A sequence (not rolled back)
    # counts the tries.
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("CREATE SEQUENCE disk_full_tries")
        admin.execute(
            "CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " PERFORM nextval('disk_full_tries');"
            " RAISE EXCEPTION 'could not extend file' USING ERRCODE = 'disk_full'; END $$"
        )
        admin.execute(
            "CREATE TRIGGER disk_full BEFORE INSERT ON samples"
            " FOR EACH ROW EXECUTE FUNCTION disk_full()"
        )
        batch = [NewSample(text=f"late {i}", label="greeting", id=f"late-{i}") for i in range(3)]
        with pytest.raises(StorageFull, match=r"^disk full: could not store .*not at once"):
            store.add(MODEL, batch)
        assert [s.id for s in store.samples(MODEL)] == ["a"]
        # Not retried: unlike a dropped connection, another try would fail the same way.
        (tries,) = admin.execute("SELECT last_value FROM disk_full_tries").fetchone()
        assert tries == 1
        admin.execute("DROP TRIGGER disk_full ON samples")
    assert store.add(MODEL, batch).accepted == 3
    assert store.count(MODEL) == 4
