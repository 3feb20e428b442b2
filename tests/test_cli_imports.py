"""What the ``loopserve`` command loads: ``--help`` and the commands that talk to a server need
neither ONNX Runtime (which only a process that opens a session imports) nor torch."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from fake_adaptation import MODEL, FakeAdaptationCore, FakeServer

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("onnxruntime", "torch")


def heavy_modules_loaded(code: str) -> list[str]:
    """The modules of HEAVY that ``code`` (after importing sys) loads, in a fresh interpreter."""
    script = (
        f"import sys\n{code}\n"
        f"heavy = {HEAVY!r}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.splitlines()[-1].replace("'", '"'))
    return loaded


@pytest.fixture
def server() -> Iterator[FakeServer]:
    running = FakeServer(FakeAdaptationCore())
    yield running
    running.stop()


def test_importing_the_cli_and_building_its_parser_loads_neither() -> None:
    code = "import service.cli\nfrom service.cli._parser import build_parser\nbuild_parser()"
    assert heavy_modules_loaded(code) == []


def test_help_loads_neither() -> None:
    code = (
        "import contextlib, io\nfrom service.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--help'])"
    )
    assert heavy_modules_loaded(code) == []


def client_commands(address: str, labels: Path) -> list[Sequence[str]]:
    remote = ["--addr", address, "--model", MODEL]
    return [
        ["status", *remote],
        ["versions", *remote],
        ["label", str(labels), *remote],
        # The fake serves no model to predict with: the command runs up to the server's answer.
        ["predict", "where is my parcel", *remote],
    ]


def test_client_commands_load_neither(server: FakeServer, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("text,label\nwhere is my parcel,shipping\n", encoding="utf-8")
    commands = client_commands(server.address, labels)
    code = (
        "import contextlib, io\nfrom service.cli import main\ncodes = []\n"
        f"for argv in {commands!r}:\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        "        codes.append(main(argv))\n"
        "assert codes == [0, 0, 0, 1], codes"
    )
    assert heavy_modules_loaded(code) == []
