"""How a version's ONNX Runtime session is configured from its SessionOptions."""

from __future__ import annotations

import pytest

from service.runtime import SessionOptions
from service.runtime._session import _session_options

SPIN = "session.intra_op.allow_spinning"
SPIN_US = "session.intra_op.spin_duration_us"


def entry(options: SessionOptions, key: str) -> str | None:
    pytest.importorskip("onnxruntime")
    session_options = _session_options(options)
    try:
        return str(session_options.get_session_config_entry(key))
    except Exception:  # onnxruntime raises for a key that was never set
        return None


def test_a_bounded_spin_is_passed_to_onnx_runtime() -> None:
    options = SessionOptions(intra_op_threads=2, thread_spinning=True, spin_duration_us=100)

    assert entry(options, SPIN) == "1"
    assert entry(options, SPIN_US) == "100"


@pytest.mark.parametrize(
    "options",
    [
        SessionOptions(intra_op_threads=2, thread_spinning=True, spin_duration_us=0),
        SessionOptions(intra_op_threads=2, thread_spinning=False, spin_duration_us=100),
    ],
    ids=["zero: onnx runtime's default", "spinning off"],
)
def test_no_spin_duration_without_spinning_or_with_zero(options: SessionOptions) -> None:
    assert entry(options, SPIN) == ("1" if options.thread_spinning else "0")
    assert entry(options, SPIN_US) is None


def test_the_defaults_bound_the_spin_for_serving_only() -> None:
    from service.config import ServingOptions

    assert ServingOptions().thread_spin_us == 20
    assert SessionOptions().spin_duration_us == 0  # tools and training: ONNX Runtime's default
