"""Which graph a new version serves (``choose_graph``), on fake sessions: no model is built."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.runtime import LoadedVersion
from service.training._int8 import INT8_FILE, HeldOut, choose_graph


class FakeSession:
    def __init__(self, accuracy: float) -> None:
        self.accuracy = accuracy
        self.retired = False

    def retire(self) -> None:
        self.retired = True


def _quantizer(int8: FakeSession, fail: Exception | None = None):
    def quantize(path: Path) -> LoadedVersion:
        path.write_bytes(b"int8 graph")
        if fail is not None:
            raise fail
        return int8

    return quantize


def _held_out(rows: int = 40) -> HeldOut:
    return HeldOut(rows, "holdout+anchor", lambda session: session.accuracy)


def test_int8_within_the_limit_serves(tmp_path: Path) -> None:
    fp32, int8 = FakeSession(0.90), FakeSession(0.90)
    logged: list[str] = []
    graph = choose_graph(fp32, tmp_path, _quantizer(int8), _held_out(), 0.01, logged.append)
    assert graph.session is int8 and graph.file == INT8_FILE
    assert graph.int8 is not None and graph.int8.accepted and graph.int8.rows == 40
    assert (tmp_path / INT8_FILE).is_file()
    assert logged == [graph.int8.summary()]


def test_int8_that_loses_accuracy_falls_back_to_fp32_and_is_removed(tmp_path: Path) -> None:
    fp32, int8 = FakeSession(0.90), FakeSession(0.80)
    logged: list[str] = []
    graph = choose_graph(fp32, tmp_path, _quantizer(int8), _held_out(), 0.01, logged.append)
    assert graph.session is fp32 and graph.file == "model.onnx"
    assert graph.int8 is not None and not graph.int8.accepted
    assert "a drop of 0.100 exceeds int8_max_accuracy_drop 0.01" in graph.int8.reason
    assert logged == [f"int8: serving fp32: {graph.int8.reason}"]
    assert int8.retired and not (tmp_path / INT8_FILE).exists()


def test_a_quantizer_failure_falls_back_to_fp32_with_its_error(tmp_path: Path) -> None:
    fp32 = FakeSession(0.9)
    quantize = _quantizer(FakeSession(0.9), fail=ValueError("unsupported op Foo"))
    graph = choose_graph(fp32, tmp_path, quantize, _held_out(), 0.01, lambda _: None)
    assert graph.session is fp32 and graph.int8 is not None
    assert graph.int8.reason == "quantization failed: ValueError: unsupported op Foo"
    assert not (tmp_path / INT8_FILE).exists()


def test_a_full_disk_is_not_a_quantizer_failure(tmp_path: Path) -> None:
    import errno

    full = OSError(errno.ENOSPC, "No space left on device")
    quantize = _quantizer(FakeSession(0.9), fail=full)
    with pytest.raises(OSError):
        choose_graph(FakeSession(0.9), tmp_path, quantize, _held_out(), 0.01, lambda _: None)


def test_int8_off_serves_fp32_without_a_check(tmp_path: Path) -> None:
    fp32 = FakeSession(0.9)
    graph = choose_graph(fp32, tmp_path, None, _held_out(), 0.01, lambda _: None)
    assert (graph.session, graph.file, graph.int8) == (fp32, "model.onnx", None)
