"""The registry's contract, run over every head-pointer backend.

A backend joins by adding a factory to ``POINTERS``: it takes the model's registry root (a
backend that keeps the head elsewhere may ignore it) and the test's request (for fixtures such as
a database) and returns a fresh, empty pointer. The head row of both stores (SQLite, PostgreSQL)
runs the same suite as the single machine's ``current`` file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from service.cluster import StoreHeadPointer
from service.domain.versions import VersionMeta
from service.errors import Conflict, NotFound
from service.registry import FilePointer, HeadPointer, ModelRegistry, VersionInfo, version_digest
from service.store import PostgresStore, SQLiteStore, Store

MODEL = "contract"
LABELS = ("a", "b")


class MemoryPointer:
    """The simplest correct pointer: a number behind a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version: int | None = None

    def read(self) -> int | None:
        with self._lock:
            return self._version

    def compare_and_set(self, version: int, expected: int | None, job: str = "") -> bool:
        with self._lock:
            if self._version != expected:
                return False
            self._version = version
            return True


def _head_row(store: Store, request: pytest.FixtureRequest) -> HeadPointer:
    request.addfinalizer(store.close)
    return StoreHeadPointer(store, MODEL)


def sqlite_head_row(root: Path, request: pytest.FixtureRequest) -> HeadPointer:
    root.mkdir(parents=True, exist_ok=True)
    return _head_row(SQLiteStore(root / "heads.db"), request)


def postgres_head_row(root: Path, request: pytest.FixtureRequest) -> HeadPointer:
    return _head_row(PostgresStore(request.getfixturevalue("database_url")), request)


PointerFactory = Callable[[Path, pytest.FixtureRequest], HeadPointer]
POINTERS: list[tuple[str, PointerFactory]] = [
    ("file", lambda root, request: FilePointer(root)),
    ("memory", lambda root, request: MemoryPointer()),
    ("sqlite-head-row", sqlite_head_row),
    ("postgres-head-row", postgres_head_row),
]


@pytest.fixture(params=[factory for _, factory in POINTERS], ids=[name for name, _ in POINTERS])
def make_registry(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], ModelRegistry]:
    """Registries over one state dir and one pointer, as two processes of a deployment see it."""
    factory: PointerFactory = request.param
    root = tmp_path / "state" / "models" / MODEL
    pointer = factory(root, request)
    return lambda: ModelRegistry(tmp_path / "state", MODEL, pointer=pointer)


@pytest.fixture
def registry(make_registry: Callable[[], ModelRegistry]) -> ModelRegistry:
    return make_registry()


def _publish(registry: ModelRegistry, payload: str, parent: int | None = None) -> VersionInfo:
    with registry.stage(parent) as staged:
        (staged.path / "model.onnx").write_text(payload)
        (staged.path / "nested").mkdir()
        (staged.path / "nested" / "tokenizer.json").write_text("{}")
        return registry.publish(staged, VersionMeta(labels=LABELS, max_seq_length=32))


def test_an_empty_registry_has_no_versions_and_no_head(registry: ModelRegistry) -> None:
    assert registry.versions() == []
    assert registry.current() is None
    with pytest.raises(NotFound):
        registry.get(1)


def test_publish_numbers_versions_and_records_meta(registry: ModelRegistry) -> None:
    first = _publish(registry, "one")
    second = _publish(registry, "two", parent=1)

    assert [v.version for v in registry.versions()] == [1, 2]
    assert registry.get(2) == second
    assert second.meta.parent == 1 and first.meta.parent is None
    assert second.meta.model == MODEL and second.meta.version == 2
    assert second.labels == list(LABELS)
    assert (second.path / "model.onnx").read_text() == "two"


def test_publishing_does_not_move_the_head(registry: ModelRegistry) -> None:
    _publish(registry, "one")

    assert registry.current() is None


def test_set_current_moves_the_head_for_every_reader(
    make_registry: Callable[[], ModelRegistry],
) -> None:
    writer, reader = make_registry(), make_registry()
    _publish(writer, "one")
    _publish(writer, "two")

    writer.set_current(1)
    assert reader.current() is not None and reader.current().version == 1
    writer.set_current(2, expected=1)
    assert reader.current() is not None and reader.current().version == 2


def test_set_current_with_a_stale_expectation_is_a_conflict(registry: ModelRegistry) -> None:
    for payload in ("one", "two", "three"):
        _publish(registry, payload)
    registry.set_current(1, expected=None)
    registry.set_current(2, expected=1)

    with pytest.raises(Conflict):
        registry.set_current(3, expected=1)  # another writer moved it from 1 to 2
    with pytest.raises(Conflict):
        registry.set_current(3, expected=None)

    assert registry.current().version == 2


def test_set_current_to_a_missing_version_is_not_found_and_keeps_the_head(
    registry: ModelRegistry,
) -> None:
    _publish(registry, "one")
    registry.set_current(1)

    with pytest.raises(NotFound):
        registry.set_current(7)

    assert registry.current().version == 1


def test_a_failed_stage_leaves_nothing_behind(registry: ModelRegistry) -> None:
    with pytest.raises(RuntimeError), registry.stage(None) as staged:
        (staged.path / "model.onnx").write_text("half")
        raise RuntimeError("writer failed")

    assert registry.versions() == []
    assert not any(p.name.startswith("staging-") for p in registry.root.iterdir())
    assert registry.remove_stale_staging() == []


def test_a_published_version_verifies(registry: ModelRegistry) -> None:
    info = _publish(registry, "one")

    assert info.meta.digest == version_digest(info.path)
    assert info.meta.digest.startswith("sha256:")
    assert registry.verify(info)


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: (path / "model.onnx").write_text("ONE"),
        lambda path: (path / "nested" / "tokenizer.json").unlink(),
        lambda path: (path / "extra.bin").write_bytes(b"\0"),
        lambda path: (path / "nested" / "tokenizer.json").rename(path / "tokenizer.json"),
    ],
    ids=["modified", "removed", "added", "moved"],
)
def test_a_damaged_version_fails_verify(
    registry: ModelRegistry, damage: Callable[[Path], object]
) -> None:
    info = _publish(registry, "one")

    damage(info.path)

    assert not registry.verify(registry.get(1))


def test_meta_changes_keep_the_digest_valid(registry: ModelRegistry) -> None:
    _publish(registry, "one")

    updated = registry.update_meta(1, status="rejected")

    assert updated.meta.status == "rejected"
    assert registry.verify(updated)


def test_a_version_from_before_digests_verifies(registry: ModelRegistry) -> None:
    _publish(registry, "one")
    registry.update_meta(1, digest="")

    assert registry.verify(registry.get(1))


def test_on_publish_sees_each_version_once_it_is_visible(tmp_path: Path) -> None:
    seen: list[VersionInfo] = []
    registry = ModelRegistry(
        tmp_path, MODEL, on_publish=lambda info: seen.append(registry.get(info.version))
    )

    info = _publish(registry, "one")

    assert seen == [info]
