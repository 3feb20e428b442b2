"""Versions on disk and the atomic ``current`` pointer (service.registry)."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path

import pytest

from service.domain.versions import VersionMeta
from service.errors import Conflict, NotFound
from service.registry import ModelRegistry, VersionInfo

MODEL = "fake"
LABELS = ["a", "b"]


def _publish(
    registry: ModelRegistry, payload: str, parent: int | None = None, **meta: object
) -> VersionInfo:
    with registry.stage(parent) as staged:
        (staged.path / "model.onnx").write_text(payload)
        (staged.path / "tokenizer.json").write_text("{}")
        return registry.publish(
            staged,
            VersionMeta(labels=tuple(LABELS), max_seq_length=32, **meta),
        )


def _leftovers(registry: ModelRegistry) -> list[str]:
    """Staging directories and temporary files that should never outlive an operation."""
    if not registry.root.exists():
        return []
    return sorted(
        p.name
        for p in registry.root.iterdir()
        if p.name.startswith("staging-") or ".tmp-" in p.name
    )


def _pointer_text(registry: ModelRegistry) -> str:
    return (registry.root / "current").read_text(encoding="utf-8")


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "state", MODEL)


# --- empty state --------------------------------------------------------------------------------


def test_empty_state_dir_has_no_versions_and_no_current(registry: ModelRegistry) -> None:
    assert registry.versions() == []
    assert registry.current() is None
    assert not registry.root.exists()


def test_get_missing_version_is_not_found(registry: ModelRegistry) -> None:
    with pytest.raises(NotFound, match="model 'fake' has no version 1"):
        registry.get(1)


# --- publish ------------------------------------------------------------------------------------


def test_versions_are_numbered_in_publish_order(registry: ModelRegistry) -> None:
    first = _publish(registry, "one")
    second = _publish(registry, "two", parent=1)
    third = _publish(registry, "three", parent=2)

    assert [v.version for v in (first, second, third)] == [1, 2, 3]
    assert [v.version for v in registry.versions()] == [1, 2, 3]
    for info, payload in zip(registry.versions(), ["one", "two", "three"], strict=True):
        assert info.model == MODEL
        assert info.path == registry.versions_dir / str(info.version)
        assert (info.path / "model.onnx").read_text() == payload
        assert info.meta.version == info.version
        assert info.meta.model == MODEL
        assert info.labels == LABELS
    assert [v.meta.parent for v in registry.versions()] == [None, 1, 2]
    assert _leftovers(registry) == []


def test_numbering_sorts_numerically_past_nine(registry: ModelRegistry) -> None:
    for i in range(11):
        _publish(registry, str(i))

    assert [v.version for v in registry.versions()] == list(range(1, 12))
    assert (registry.get(10).path / "model.onnx").read_text() == "9"


def test_publish_records_meta_and_serving_file(registry: ModelRegistry) -> None:
    info = _publish(registry, "x", metrics={"accuracy": 0.9}, serving_file="model.int8.onnx")

    stored = json.loads((info.path / "meta.json").read_text())
    assert stored["metrics"] == {"accuracy": 0.9}
    assert stored["created"].endswith("Z")
    assert info.serving_file == info.path / "model.int8.onnx"
    assert _publish(registry, "y").serving_file.name == "model.onnx"


def test_exception_inside_stage_removes_staging_and_publishes_nothing(
    registry: ModelRegistry,
) -> None:
    _publish(registry, "one")

    with pytest.raises(RuntimeError, match="training diverged"), registry.stage(1) as staged:
        (staged.path / "model.onnx").write_text("half")
        assert staged.path.is_dir()
        raise RuntimeError("training diverged")

    assert not staged.path.exists()
    assert _leftovers(registry) == []
    assert [v.version for v in registry.versions()] == [1]
    assert _publish(registry, "two").version == 2


def test_failure_during_publish_leaves_no_half_version(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    _publish(registry, "one")

    def failing_rename(src: object, dst: object) -> None:
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr("service.registry._registry.os.rename", failing_rename)
        with pytest.raises(OSError, match="disk full"):
            _publish(registry, "two")

    assert [v.version for v in registry.versions()] == [1]
    assert sorted(p.name for p in registry.versions_dir.iterdir()) == ["1"]
    assert _leftovers(registry) == []
    assert _publish(registry, "two").version == 2


def test_staged_files_are_invisible_until_published(registry: ModelRegistry) -> None:
    _publish(registry, "one")

    with registry.stage(1) as staged:
        (staged.path / "model.onnx").write_text("pending")
        assert [v.version for v in registry.versions()] == [1]
        info = registry.publish(staged, VersionMeta(labels=tuple(LABELS), max_seq_length=32))
        assert [v.version for v in registry.versions()] == [1, 2]

    assert (info.path / "model.onnx").read_text() == "pending"
    assert _leftovers(registry) == []


def test_concurrent_publishes_get_distinct_numbers(tmp_path: Path) -> None:
    errors: list[BaseException] = []

    def worker(tag: str) -> None:
        registry = ModelRegistry(tmp_path / "state", MODEL)  # one instance per "process"
        try:
            for i in range(5):
                _publish(registry, f"{tag}{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(tag,)) for tag in "abc"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    registry = ModelRegistry(tmp_path / "state", MODEL)
    assert errors == []
    assert [v.version for v in registry.versions()] == list(range(1, 16))
    payloads = {(v.path / "model.onnx").read_text() for v in registry.versions()}
    assert payloads == {f"{tag}{i}" for tag in "abc" for i in range(5)}


# --- current pointer ----------------------------------------------------------------------------


def test_current_pointer_round_trip(registry: ModelRegistry) -> None:
    _publish(registry, "one")
    _publish(registry, "two")
    assert registry.current() is None  # publishing does not move the pointer

    assert registry.set_current(2).version == 2
    current = registry.current()
    assert current is not None
    assert current.version == 2
    assert (current.path / "model.onnx").read_text() == "two"

    registry.set_current(1)
    current = registry.current()
    assert current is not None
    assert current.version == 1
    assert _pointer_text(registry).strip() == "1"


def test_current_pointer_survives_a_restart(tmp_path: Path) -> None:
    before = ModelRegistry(tmp_path / "state", MODEL)
    _publish(before, "one")
    _publish(before, "two")
    before.set_current(2)

    after = ModelRegistry(tmp_path / "state", MODEL)

    current = after.current()
    assert current is not None
    assert current.version == 2
    assert current.meta == before.get(2).meta


def test_models_do_not_share_pointers(tmp_path: Path) -> None:
    one = ModelRegistry(tmp_path / "state", "one")
    other = ModelRegistry(tmp_path / "state", "other")
    _publish(one, "x")
    one.set_current(1)

    assert other.current() is None
    assert other.versions() == []


@pytest.mark.parametrize("missing", [0, 3, 99, -1])
def test_set_current_to_missing_version_is_not_found_and_keeps_pointer(
    registry: ModelRegistry, missing: int
) -> None:
    _publish(registry, "one")
    _publish(registry, "two")
    registry.set_current(2)

    with pytest.raises(NotFound, match=f"model 'fake' has no version {missing}"):
        registry.set_current(missing)

    current = registry.current()
    assert current is not None
    assert current.version == 2
    assert _pointer_text(registry) == "2\n"


def test_set_current_on_empty_registry_writes_no_pointer(registry: ModelRegistry) -> None:
    with pytest.raises(NotFound, match="has no version 1"):
        registry.set_current(1)

    assert registry.current() is None
    assert not (registry.root / "current").exists()


def test_pointer_never_names_a_missing_version(registry: ModelRegistry) -> None:
    for payload in ("one", "two", "three"):
        _publish(registry, payload)

    for target in [1, 3, 7, 2, 0, 3, 4, 1]:
        with contextlib.suppress(NotFound):
            registry.set_current(target)
        named = int(_pointer_text(registry))
        assert (registry.versions_dir / str(named) / "meta.json").is_file()
        assert named in {v.version for v in registry.versions()}
        assert _leftovers(registry) == []


# --- update_meta --------------------------------------------------------------------------------


def test_update_meta_merges_and_persists(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "state", MODEL)
    _publish(registry, "one", status="candidate", metrics={"accuracy": 0.8})

    updated = registry.update_meta(1, status="serving", reason="test")

    assert updated.meta.status == "serving"
    assert updated.meta.reason == "test"
    assert updated.meta.metrics == {"accuracy": 0.8}
    assert registry.verify(updated)
    assert updated.labels == LABELS
    reread = ModelRegistry(tmp_path / "state", MODEL).get(1)
    assert reread.meta == updated.meta
    assert _leftovers(registry) == []


def test_update_meta_of_missing_version_is_not_found(registry: ModelRegistry) -> None:
    with pytest.raises(NotFound, match="has no version 5"):
        registry.update_meta(5, status="x")


def test_concurrent_set_current_in_one_process(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:

    _publish(registry, "one")
    _publish(registry, "two")
    real_replace = os.replace
    barrier = threading.Barrier(2, timeout=2)

    def replace_after_both_wrote(src: str | Path, dst: str | Path) -> None:
        # Force the interleaving "both threads wrote their temporary file, then both rename".
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()
        real_replace(src, dst)

    monkeypatch.setattr("service.registry._files.os.replace", replace_after_both_wrote)
    errors: list[BaseException] = []

    def worker(version: int) -> None:
        try:
            registry.set_current(version)
        except Conflict:
            pass  # the other thread moved the head between this one's read and its write
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(v,)) for v in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert _pointer_text(registry) in ("1\n", "2\n")
