"""The set-up: which torch build the Makefile and the Dockerfile install, and how alibi-detect is
installed without the image stack its declared dependencies would pull in."""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from test_layers import imports

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "install-torch.sh"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def fake_bin(tmp_path: Path, gpu: bool) -> Path:
    """A PATH entry whose nvidia-smi sees a GPU or not."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\nexit {0 if gpu else 9}\n")
    smi.chmod(0o755)
    return bin_dir


def fake_pip(tmp_path: Path, failing_calls: int) -> tuple[Path, Path]:
    """A pip that records each call and fails the first ``failing_calls`` of them."""
    log = tmp_path / "pip.log"
    pip = tmp_path / "pip"
    pip.write_text(
        f'#!/bin/sh\necho "$*" >> {log}\nn=$(wc -l < {log})\n[ "$n" -gt {failing_calls} ]\n'
    )
    pip.chmod(0o755)
    return pip, log


def install_torch(
    tmp_path: Path, *args: str, gpu: bool = False, **env: str
) -> subprocess.CompletedProcess[str]:
    path = f"{fake_bin(tmp_path, gpu)}:/usr/bin:/bin"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TORCH_")}
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        env={**clean, "PATH": path, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_without_a_gpu_the_cpu_build_comes_first_from_the_configured_indexes(
    tmp_path: Path,
) -> None:
    result = install_torch(tmp_path, "--dry-run", "PIP")
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "PIP install --timeout 15 --retries 1 torch==2.13.0+cpu",
        f"PIP install --timeout 15 --retries 1 --index-url {CPU_INDEX} torch==2.13.0",
    ]


def test_with_a_gpu_the_default_pypi_build_is_installed(tmp_path: Path) -> None:
    result = install_torch(tmp_path, "--dry-run", "PIP", gpu=True)
    assert result.stdout.splitlines() == ["PIP install --timeout 15 --retries 1 torch==2.13.0"]


def test_torch_spec_overrides_the_choice(tmp_path: Path) -> None:
    result = install_torch(tmp_path, "--dry-run", "PIP", TORCH_SPEC="torch==2.9.1")
    assert result.stdout.splitlines() == ["PIP install --timeout 15 --retries 1 torch==2.9.1"]


def test_when_no_configured_index_has_the_cpu_build_the_cpu_index_is_used(
    tmp_path: Path,
) -> None:
    pip, log = fake_pip(tmp_path, failing_calls=1)
    result = install_torch(tmp_path, str(pip))
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert calls == [
        "install --quiet --timeout 15 --retries 1 torch==2.13.0+cpu",
        f"install --quiet --timeout 15 --retries 1 --index-url {CPU_INDEX} torch==2.13.0",
    ]
    assert f"trying {CPU_INDEX}" in result.stderr


def test_a_local_cpu_build_is_not_followed_by_the_cpu_index(tmp_path: Path) -> None:
    pip, log = fake_pip(tmp_path, failing_calls=0)
    assert install_torch(tmp_path, str(pip)).returncode == 0
    assert log.read_text().splitlines() == [
        "install --quiet --timeout 15 --retries 1 torch==2.13.0+cpu"
    ]


def test_when_every_source_fails_it_exits_1_and_says_what_to_set(tmp_path: Path) -> None:
    pip, _ = fake_pip(tmp_path, failing_calls=2)
    result = install_torch(tmp_path, str(pip))
    assert result.returncode == 1
    assert "error: could not install torch 2.13.0; set TORCH_SPEC" in result.stderr


def make_recipe(tmp_path: Path, stamp: str) -> list[str]:
    """The commands ``make`` would run to build ``stamp`` of a new environment under tmp_path."""
    venv = f"{tmp_path}/venv"
    return subprocess.run(
        ["make", "-n", "-B", f"VENV={venv}", f"PYTHON={sys.executable}", f"{venv}/{stamp}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_the_makefile_installs_torch_through_the_script_then_alibi_detect_without_deps(
    tmp_path: Path,
) -> None:
    recipe = make_recipe(tmp_path, ".installed-serve")
    torch = next(i for i, line in enumerate(recipe) if "scripts/install-torch.sh" in line)
    no_deps = next(i for i, line in enumerate(recipe) if "requirements-no-deps.txt" in line)
    project = next(i for i, line in enumerate(recipe) if line.endswith(" -e ."))
    assert torch < no_deps < project
    assert recipe[torch].startswith(f"TORCH_VERSION={torch_version()} ")
    assert "--no-deps" in recipe[no_deps]
    assert not any("+cpu" in line for line in recipe)  # the spec is the script's choice


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_serving_installs_no_dev_extra_and_the_dev_stamp_adds_it(tmp_path: Path) -> None:
    assert not any("[dev]" in line for line in make_recipe(tmp_path, ".installed-serve"))
    recipe = make_recipe(tmp_path, ".installed-dev")
    dev = next(i for i, line in enumerate(recipe) if line.endswith(" -e '.[dev]'"))
    assert dev > next(i for i, line in enumerate(recipe) if line.endswith(" -e ."))
    makefile = (ROOT / "Makefile").read_text()
    assert "\nserve: install\n" in makefile
    for target in ("test", "test-fast", "lint", "protos"):
        assert f"\n{target}: install-dev\n" in makefile


def closure(requirements: Iterable[str]) -> set[str]:
    """The distributions installing ``requirements`` brings (installed metadata, no extras)."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen or not applies(requirement):
            continue
        seen.add(name)
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            todo += map(Requirement, importlib.metadata.distribution(name).requires or [])
    return seen


def applies(requirement: Requirement) -> bool:
    """Whether this Python installs ``requirement`` (its marker, no extras)."""
    return requirement.marker is None or requirement.marker.evaluate({"extra": ""})


def serving_distributions() -> set[str]:
    """What ``make serve`` installs: the project's dependencies and the --no-deps pins."""
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [Requirement(p) for p in no_deps_pins()]
    return closure(dependencies) | {canonicalize_name(p.name) for p in pins if applies(p)}


# Only `make protos` generates code, and it installs the dev extra.
DEV_IMPORTERS = {"service.api.codegen"}


def third_party_imports() -> Iterator[tuple[str, str]]:
    """("where", top-level module) for each import of service outside the standard library."""
    for item in imports(ROOT, "service"):
        top = item.target.split(".")[0]
        if item.module not in DEV_IMPORTERS and top not in ("", "service", *STDLIB):
            yield f"{item.module}:{item.line}", top


STDLIB = frozenset(sys.stdlib_module_names)


def test_service_imports_nothing_that_only_the_dev_extra_installs() -> None:
    """Every third-party module that service imports (lazy imports included) comes from a
    distribution that serving installs, so `loopserve serve` and `init` run without the dev extra."""
    serving = serving_distributions()
    providers = importlib.metadata.packages_distributions()
    outside = []
    for where, top in third_party_imports():
        dists = {canonicalize_name(d) for d in providers.get(top, [])}
        if not dists and canonicalize_name(top) in left_out_here():
            continue  # alibi-detect on Python 3.13: a definition needing it is refused at load
        if not dists or not dists <= serving:
            outside.append(f"{where} imports {top} from {sorted(dists) or 'nothing installed'}")
    assert outside == []


def left_out_here() -> set[str]:
    """The set-up's requirements whose environment marker leaves them out on this Python."""
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [Requirement(r) for r in [*dependencies, *no_deps_pins()]]
    return {canonicalize_name(p.name) for p in pins if not applies(p)}


def dockerfile_args() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text()
    return {
        m.group(1): m.group(2).strip('"')
        for m in re.finditer(r"^ARG (\w+)=(.*)$", text, flags=re.MULTILINE)
    }


def test_the_dockerfile_defaults_build_the_cpu_torch_through_the_script() -> None:
    text = (ROOT / "Dockerfile").read_text()
    args = dockerfile_args()
    assert args["TORCH_VERSION"] == torch_version()
    assert args["TORCH_SPEC"] == ""  # empty: the script picks the CPU build with its fallback
    assert args["TORCH_CPU_INDEX_URL"] == CPU_INDEX
    assert "COPY scripts/install-torch.sh scripts/requirements-no-deps.txt" in text
    assert "/src/scripts/install-torch.sh pip" in text
    assert "pip install --no-deps -r /src/scripts/requirements-no-deps.txt" in text
    assert text.index("install-torch.sh pip") < text.index("RUN pip install --no-warn-conflicts .")


def torch_version() -> str:
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(r"^TORCH_VERSION \?= (\S+)$", makefile, flags=re.MULTILINE)
    assert match is not None
    return match.group(1)


def test_the_script_and_the_makefile_agree_on_the_torch_version() -> None:
    script = SCRIPT.read_text()
    assert f'TORCH_VERSION="${{TORCH_VERSION:-{torch_version()}}}"' in script


def test_alibi_detect_is_installed_without_its_declared_dependencies() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    names = [re.split(r"[<>=!\[ ;]", d)[0].lower() for d in pyproject["project"]["dependencies"]]
    assert "alibi-detect" not in names
    for unused in ("opencv-python", "scikit-image", "matplotlib", "pandas"):
        assert unused not in names
    # Pillow is a dependency of its own (image decoding), at a release without published CVEs.
    assert "pillow>=13" in pyproject["project"]["dependencies"]
    assert 'alibi-detect==0.11.4; python_version < "3.13"' in no_deps_pins()


def no_deps_pins() -> list[str]:
    """The requirement lines of scripts/requirements-no-deps.txt."""
    lines = (ROOT / "scripts" / "requirements-no-deps.txt").read_text().splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def test_alibi_detect_and_the_pins_that_exist_for_it_stay_off_python_3_13() -> None:
    """On 3.11 and 3.12 the drift stack resolves as it always has (numpy < 2, scipy < 1.12);
    on 3.13, where those do not install, alibi-detect and what only it imports are left out."""
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]

    def wanted(python: str) -> dict[str, str]:
        env = {"python_version": python, "extra": ""}
        pins = [Requirement(r) for r in [*dependencies, *no_deps_pins()]]
        return {
            canonicalize_name(r.name): str(r.specifier)
            for r in pins
            if r.marker is None or r.marker.evaluate(env)
        }

    alibi_only = {"alibi-detect", "scikit-learn", "numba", "pydantic", "toml", "catalogue", "dill"}
    for python in ("3.11", "3.12"):
        pins = wanted(python)
        assert alibi_only <= set(pins)
        assert SpecifierSet(pins["numpy"]) == SpecifierSet("<2,>=1.26")
        assert SpecifierSet(pins["scipy"]) == SpecifierSet("<1.12,>=1.11")
        assert SpecifierSet(pins["pydantic"]) == SpecifierSet("<2,>=1.10")
    pins = wanted("3.13")
    assert not alibi_only & set(pins)
    assert "2.1" in SpecifierSet(pins["numpy"]) and "1.14.1" in SpecifierSet(pins["scipy"])


def test_the_environment_has_no_vulnerable_pillow() -> None:
    """Pillow is absent, or at least 10.2 if something else brought it."""
    if importlib.util.find_spec("PIL") is None:
        return
    version = tuple(int(p) for p in importlib.metadata.version("pillow").split(".")[:2])
    assert version >= (10, 2)


def test_alibi_detect_drift_detectors_import() -> None:
    pytest.importorskip("alibi_detect", reason="alibi-detect is not installed (Python 3.13)")
    from alibi_detect.cd import ChiSquareDrift, KSDrift, LSDDDriftOnline, MMDDriftOnline

    assert all((ChiSquareDrift, KSDrift, LSDDDriftOnline, MMDDriftOnline))
