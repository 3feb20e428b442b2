"""HeadFollower: replicas reach the head row by notification or by polling, and keep serving
through a database outage or a version they cannot load."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from waiting import wait_until

from service.cluster import HeadFollower
from service.errors import Unavailable
from service.metrics import Metrics

MODEL = "m"


class Heads:
    """The head rows; ``down`` makes every read fail as an unreachable database does."""

    def __init__(self, head: int | None = 1) -> None:
        self.rows: dict[str, int | None] = {MODEL: head}
        self.down = False

    def head(self, model: str) -> int | None:
        if self.down:
            raise Unavailable("database unreachable")
        return self.rows.get(model)


class Model:
    def __init__(self, version: int | None = 1, broken: set[int] | None = None) -> None:
        self.loaded_version = version
        self.broken = broken or set()
        self.followed: list[int] = []

    def follow(self, version: int) -> None:
        if version in self.broken:
            raise ValueError(f"version {version} does not verify")
        self.followed.append(version)
        self.loaded_version = version


class Watcher:
    def __init__(self) -> None:
        self.callback: Callable[[str], None] | None = None
        self.stopped = False

    def start(self, on_change: Callable[[str], None]) -> None:
        self.callback = on_change

    def stop(self) -> None:
        self.stopped = True


def follower(
    heads: Heads, model: Model, poll: float, watcher: Watcher | None = None
) -> HeadFollower:
    return HeadFollower({MODEL: model}, heads, Metrics(), poll, watcher)


def test_sync_follows_a_new_head_and_counts_it() -> None:
    heads, model = Heads(2), Model(1)
    metrics = Metrics()
    f = HeadFollower({MODEL: model}, heads, metrics, 60)
    f.sync()
    f.sync()  # already there: nothing more
    assert model.followed == [2]
    assert (
        metrics.registry.get_sample_value(
            "loopserve_head_follow_total", {"model": MODEL, "outcome": "ok"}
        )
        == 1
    )
    assert metrics.registry.get_sample_value("loopserve_head_version", {"model": MODEL}) == 2


def test_a_notification_wakes_the_follower_before_the_poll() -> None:
    heads, model, watcher = Heads(1), Model(1), Watcher()
    f = follower(heads, model, poll=60, watcher=watcher)
    f.start()
    try:
        heads.rows[MODEL] = 3
        assert watcher.callback is not None
        watcher.callback(MODEL)
        wait_until(lambda: model.loaded_version == 3, timeout=2)
    finally:
        f.stop()
    assert watcher.stopped


def test_polling_delivers_without_any_notification() -> None:
    heads, model = Heads(1), Model(1)
    f = follower(heads, model, poll=0.05)
    f.start()
    try:
        heads.rows[MODEL] = 4
        wait_until(lambda: model.loaded_version == 4, timeout=2)
    finally:
        f.stop()


def test_an_unreachable_database_keeps_the_loaded_version(caplog: pytest.LogCaptureFixture) -> None:
    heads, model = Heads(1), Model(1)
    metrics = Metrics()
    f = HeadFollower({MODEL: model}, heads, metrics, 60)
    heads.down = True
    f.sync()
    f.sync()
    assert model.loaded_version == 1
    assert (
        metrics.registry.get_sample_value(
            "loopserve_head_follow_total", {"model": MODEL, "outcome": "unreachable"}
        )
        == 2
    )
    assert sum("cannot read the head row" in r.message for r in caplog.records) == 1  # logged once
    heads.down, heads.rows[MODEL] = False, 2
    f.sync()
    assert model.loaded_version == 2


def test_a_version_that_fails_to_load_is_retried_and_the_old_one_serves() -> None:
    heads, model = Heads(2), Model(1, broken={2})
    metrics = Metrics()
    f = HeadFollower({MODEL: model}, heads, metrics, 60)
    f.sync()
    assert model.loaded_version == 1
    model.broken.clear()  # e.g. the files became visible on the shared volume
    f.sync()
    assert model.loaded_version == 2
    assert (
        metrics.registry.get_sample_value(
            "loopserve_head_follow_total", {"model": MODEL, "outcome": "failed"}
        )
        == 1
    )


def test_wait_for_head_waits_for_the_first_version() -> None:
    heads = Heads(None)
    f = follower(heads, Model(None), poll=0.02)
    threading.Timer(0.1, lambda: heads.rows.__setitem__(MODEL, 1)).start()
    assert f.wait_for_head(MODEL, timeout=5) == 1
    heads.rows[MODEL] = None
    with pytest.raises(TimeoutError, match="no serving version yet"):
        f.wait_for_head(MODEL, timeout=0.1)


def test_a_version_that_keeps_failing_is_tried_less_and_less_often() -> None:
    heads, model = Heads(2), Model(1, broken={2})
    tries: list[int] = []
    follow = model.follow

    def counted(version: int) -> None:
        tries.append(version)
        follow(version)

    model.follow = counted
    f = HeadFollower({MODEL: model}, heads, Metrics(), 60)
    for _ in range(40):
        f.sync()
    assert 5 <= len(tries) <= 10  # 3 at once, then after 1, 2, 4, 8, 16 skipped polls
    model.broken.clear()
    heads.rows[MODEL] = 3  # a new head is tried at once
    f.sync()
    assert model.loaded_version == 3
