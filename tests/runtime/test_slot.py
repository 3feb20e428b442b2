"""A swap frees the retired version's ONNX Runtime session: at once when no batch runs on it, or
when its last batch ends; only the serving and still-draining versions keep a session."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tasks.image.tiny_image_model import tiny_image_onnx

from service.errors import Unavailable
from service.runtime import FeedGroup, LoadedVersion, ModelSlot, SessionOptions, live_sessions
from service.tasks.image import ONNX_INPUT

MODEL = "slot-test"


class Pixels:
    """A preprocessor for the tiny graph: items are already [3, 4, 4] pixel arrays."""

    def groups(self, items: Sequence[Any]) -> list[FeedGroup]:
        return [FeedGroup(list(range(len(items))), {ONNX_INPUT: np.stack(items)})]

    def warmup_items(self) -> list[Any]:
        return [np.ones((3, 4, 4), dtype=np.float32)]

    def properties(self) -> dict[str, str]:
        return {}


@pytest.fixture
def open_version(tmp_path: Path) -> Any:
    path = tmp_path / "model.onnx"
    tiny_image_onnx(path)

    def opened(version: int) -> LoadedVersion:
        options = SessionOptions(intra_op_threads=1, providers="cpu")
        return LoadedVersion(MODEL, version, path, Pixels(), ["r", "g", "b"], options)

    return opened


def ours() -> list[int]:
    return [version for model, version in live_sessions() if model == MODEL]


def test_swaps_and_rollbacks_leave_only_the_serving_session(open_version: Any) -> None:
    slot = ModelSlot(MODEL)
    for version in (1, 2, 3, 1, 2):  # 1 and 2 again: rollbacks load a fresh session
        slot.swap(open_version(version))
        assert ours() == [version]
    retired = slot.swap(open_version(3))
    assert ours() == [3]
    with pytest.raises(Unavailable, match=f"model '{MODEL}' version 2 no longer serves"):
        retired.predict(retired.preprocessor.warmup_items())


def test_a_draining_version_keeps_its_session_until_its_last_batch_ends(
    open_version: Any,
) -> None:
    slot = ModelSlot(MODEL)
    slot.swap(open_version(1))
    with slot.lease() as draining:
        slot.swap(open_version(2), drain_timeout=0)  # gives up waiting: the batch still runs
        assert ours() == [1, 2]
        assert draining.predict(draining.preprocessor.warmup_items()).probabilities.shape == (1, 3)
    assert ours() == [2]


def test_freeing_a_session_hands_the_freed_heap_back(
    open_version: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    trims: list[int] = []
    monkeypatch.setattr("service.runtime._session.return_free_memory", lambda: trims.append(1))
    slot = ModelSlot(MODEL)
    slot.swap(open_version(1))
    slot.swap(open_version(2))
    slot.swap(open_version(3))
    assert len(trims) == 2  # once per retired version


def test_the_c_library_can_return_free_memory_here() -> None:
    from service.memory import return_free_memory

    assert return_free_memory()  # glibc (Linux): what the server and the images run on
