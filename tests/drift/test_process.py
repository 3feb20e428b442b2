"""The drift worker process keeps torch out when only the windowed tests run."""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import sys

    import numpy as np

    from service.drift._process import _without_torch

    _without_torch()
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError as exc:
        print("refused:", exc)
    from service.drift._univariate import ks_per_feature

    rng = np.random.default_rng(0)
    p_values, _ = ks_per_feature(rng.normal(size=(200, 3)), rng.normal(size=(50, 3)) + 1.0)
    print("p:", float(p_values.min()) < 0.01)
    print("torch loaded:", "torch" in sys.modules)
    """
)


def test_torch_is_refused_and_the_window_tests_still_run() -> None:
    """A refused import, not a None in sys.modules: scipy looks modules up there by name."""
    result = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "refused: torch is kept out of the drift worker",
        "p: True",
        "torch loaded: False",
    ]
