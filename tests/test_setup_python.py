"""Which Python the Makefile makes its environment with (scripts/pick-python.sh), and that an
unsupported or missing one stops make before anything is installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "pick-python.sh"
SUPPORTED = ("3.12", "3.11", "3.13")  # in order of preference, as the Makefile lists them
ACCEPTED = "loopserve runs on Python 3.12, 3.11, 3.13"
TOOLS = ("sed", "sort", "head", "tail")  # what the script runs besides the interpreters


def fake_path(tmp_path: Path, pythons: dict[str, str | None]) -> Path:
    """A PATH directory with only the script's tools and ``pythons``: name -> the X.Y version
    it reports, or None for a pyenv shim of an inactive version (it fails). Each run is logged."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    for name, version in pythons.items():
        exe = bin_dir / name
        answer = f"echo {version}" if version else "exit 127"
        exe.write_text(f'#!/bin/sh\necho "$0" >> {tmp_path}/ran.log\n{answer}\n')
        exe.chmod(0o755)
    return bin_dir


def pick(
    tmp_path: Path,
    pythons: dict[str, str | None],
    py: str = "",
    python: str = "",
    venv_version: str | None = None,
) -> subprocess.CompletedProcess[str]:
    venv = tmp_path / "venv"
    if venv_version:
        venv.mkdir()
        (venv / "pyvenv.cfg").write_text(f"home = /x\nversion = {venv_version}\n")
    return subprocess.run(
        ["/bin/bash", str(SCRIPT), str(venv), py, python, *SUPPORTED],
        env={"PATH": str(fake_path(tmp_path, pythons))},
        capture_output=True,
        text=True,
        timeout=30,
    )


def picked(tmp_path: Path, result: subprocess.CompletedProcess[str]) -> tuple[str, str]:
    assert result.returncode == 0, result.stderr
    version, exe = result.stdout.split()
    return version, exe.removeprefix(f"{tmp_path}/")


@pytest.mark.parametrize(
    ("found", "expected"), [(("3.11", "3.12", "3.13"), "3.12"), (("3.13", "3.11"), "3.11")]
)
def test_the_newest_python_that_runs_every_drift_detector_is_preferred(
    tmp_path: Path, found: tuple[str, ...], expected: str
) -> None:
    pythons: dict[str, str | None] = {f"python{v}": v for v in found}
    result = pick(tmp_path, {**pythons, "python3": "3.13"})
    assert picked(tmp_path, result) == (expected, f"bin/python{expected}")


def test_python_3_13_is_picked_when_it_is_the_only_one(tmp_path: Path) -> None:
    result = pick(tmp_path, {"python3.12": None, "python3.13": "3.13"})
    assert picked(tmp_path, result) == ("3.13", "bin/python3.13")


def test_a_python_that_does_not_run_is_passed_over(tmp_path: Path) -> None:
    result = pick(tmp_path, {"python3.12": None, "python3.11": "3.11"})
    assert picked(tmp_path, result) == ("3.11", "bin/python3.11")


def test_python3_is_the_last_resort_when_its_version_is_supported(tmp_path: Path) -> None:
    assert picked(tmp_path, pick(tmp_path, {"python3": "3.12"})) == ("3.12", "bin/python3")


def test_without_a_supported_python_it_fails_naming_the_versions_it_accepts(
    tmp_path: Path,
) -> None:
    result = pick(tmp_path, {"python3.12": None})
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: no Python found: {ACCEPTED}")


def test_a_python3_of_an_unsupported_version_is_refused(tmp_path: Path) -> None:
    result = pick(tmp_path, {"python3": "3.10"})
    assert result.returncode == 1
    assert f"error: Python 3.10 is not supported. {ACCEPTED}" in result.stderr


@pytest.mark.parametrize("py", ["3.11", "3.13"])
def test_py_picks_that_version(tmp_path: Path, py: str) -> None:
    pythons = {"python3.12": "3.12", "python3.11": "3.11", "python3.13": "3.13"}
    assert picked(tmp_path, pick(tmp_path, pythons, py=py)) == (py, f"bin/python{py}")


def test_py_of_a_version_not_on_path_says_how_to_name_one(tmp_path: Path) -> None:
    result = pick(tmp_path, {"python3.12": None, "python3.11": "3.11"}, py="3.12")
    assert result.returncode == 1
    assert "error: python3.12 is not on PATH, or does not run" in result.stderr
    assert "PYTHON=/path/to/python" in result.stderr


def test_a_newer_py_is_refused_as_not_supported_yet_before_any_python_runs(
    tmp_path: Path,
) -> None:
    result = pick(tmp_path, {"python3.14": "3.14"}, py="3.14")
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"error: Python 3.14 is not supported yet. {ACCEPTED}: choose one with PY=X.Y"
    )
    assert not (tmp_path / "ran.log").exists()


def test_python_names_the_interpreter(tmp_path: Path) -> None:
    result = pick(tmp_path, {"mine": "3.12"}, python=f"{tmp_path}/bin/mine")
    assert picked(tmp_path, result) == ("3.12", "bin/mine")


def test_python_of_an_unsupported_version_is_refused(tmp_path: Path) -> None:
    result = pick(tmp_path, {"mine": "3.14"}, python=f"{tmp_path}/bin/mine")
    assert result.returncode == 1
    assert "error: Python 3.14 is not supported yet" in result.stderr


def test_python_and_py_must_agree(tmp_path: Path) -> None:
    result = pick(tmp_path, {"mine": "3.11"}, py="3.12", python=f"{tmp_path}/bin/mine")
    assert result.returncode == 1
    assert f"error: PYTHON={tmp_path}/bin/mine is Python 3.11, not PY=3.12." in result.stderr


def test_an_existing_environment_keeps_its_version(tmp_path: Path) -> None:
    result = pick(tmp_path, {"python3.12": "3.12"}, venv_version="3.11.7")
    assert picked(tmp_path, result) == ("3.11", "venv/bin/python")


def test_an_existing_environment_of_another_version_is_refused(tmp_path: Path) -> None:
    result = pick(tmp_path, {"python3.12": "3.12"}, py="3.12", venv_version="3.11.7")
    assert result.returncode == 1
    assert f"error: {tmp_path}/venv was made with Python 3.11, not 3.12; remove it" in (
        result.stderr
    )


def test_an_existing_environment_of_an_unsupported_version_is_refused(tmp_path: Path) -> None:
    result = pick(tmp_path, {"python3.12": "3.12"}, venv_version="3.10.13")
    assert result.returncode == 1
    assert "was made with Python 3.10, which is not supported" in result.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_stops_on_an_unsupported_python_before_installing_anything(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    # Not the variables of a make that runs this suite (`make test PYTHON=...` passes them down).
    inherited = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTHON", "PY")
    env = {k: v for k, v in os.environ.items() if k not in inherited}
    done = subprocess.run(
        ["make", "install", "PY=3.14", f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert done.returncode != 0
    assert "error: Python 3.14 is not supported yet" in done.stderr
    assert "pip" not in done.stdout
    assert not venv.exists()


def makefile_versions() -> list[str]:
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(r"^SUPPORTED_PYTHONS := (.+)$", makefile, flags=re.MULTILINE)
    assert match is not None
    return match.group(1).split()


def test_the_makefile_pyproject_and_these_tests_agree_on_the_versions() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    allowed = SpecifierSet(project["requires-python"])
    minors = [f"3.{minor}" for minor in range(8, 16)]
    assert [v for v in minors if f"{v}.0" in allowed] == sorted(makefile_versions())
    assert makefile_versions() == list(SUPPORTED)
    prefix = "Programming Language :: Python :: "
    classified = [c.removeprefix(prefix) for c in project["classifiers"] if c.startswith(prefix)]
    assert sorted(v for v in classified if re.fullmatch(r"3\.\d+", v)) == sorted(SUPPORTED)
