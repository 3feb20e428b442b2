"""Debian's chromium for the console's browser tests, launched by Playwright through its path.

``scripts/chromium.sh install`` installs it (``make test`` runs that). Without it the browser
tests are skipped with the reason, except in CI (``CI=true``), where they fail. Playwright's own
browser downloads (``playwright install``) are never used: the machine may have no internet.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

# LOOPSERVE_CHROMIUM names another executable; scripts/chromium.sh reads it too.
EXECUTABLE = os.environ.get("LOOPSERVE_CHROMIUM", "/usr/bin/chromium")
# On a closed network chromium's background services (updates, sync, QUIC probes) fail and
# retry; a container has no GPU and often no user namespaces for the sandbox.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launch_args() -> dict[str, Any]:
    """Playwright's launch options; skips (fails under CI=true) when there is no chromium."""
    if not (Path(EXECUTABLE).is_file() and os.access(EXECUTABLE, os.X_OK)):
        message = f"no chromium at {EXECUTABLE} (scripts/chromium.sh install)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return {"executable_path": EXECUTABLE, "headless": True, "args": ARGS}
