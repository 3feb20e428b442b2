"""The package layers of ``service``: no import cycles between packages, no upward imports, grpc
only in the api, torch only in training code.

Every module is parsed, imports inside functions included (a lazy import is still a
dependency). A module ``service/x.py`` and a package ``service/x/`` are both the unit ``x``,
except a task's training side: ``service/tasks/<task>/training/`` of every task is the unit
``tasks/*/training``, above ``training``, which reaches it only through the task registry (a
module path imported at run time). Both sit above everything the server is composed of. A
subprocess checks what the parse cannot see: importing the serving process loads no torch.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lowest first. A unit may import units of its own layer or below; within a layer only while no
# cycle forms. "" is the top-level package itself (``service/__init__.py``: the version).
LAYERS: list[list[str]] = [
    ["", "errors", "types", "domain"],
    ["config", "security", "calibration", "priority", "memory", "metrics", "disk_full"],
    ["runtime", "registry", "store"],
    ["tasks", "serving", "inference"],
    ["drift"],
    ["adaptation"],
    ["cluster"],
    ["api", "web", "console"],
    ["app"],
    # Training code runs in the fine-tune job's process and in ``loopserve init``, never in the
    # server: nothing the server is composed of may import it.
    ["training"],
    ["tasks/*/training"],
    ["cli"],
]
GRPC_HOME = "api"  # the only unit that speaks the wire protocol
TASKS = "tasks"  # one package per task; its training subpackage is a unit of its own
TASK_TRAINING = "tasks/*/training"
# The only units that import torch and what loads it (serving runs ONNX Runtime).
TORCH_HOMES = ("training", TASK_TRAINING)
TORCH_MODULES = ("torch", "safetensors.torch", "kornia", "onnxscript", "transformers")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    line: int
    target: str  # the imported module, dotted


def modules(root: Path, package: str) -> Iterator[tuple[str, Path]]:
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def imports(root: Path, package: str) -> Iterator[Import]:
    for name, path in modules(root, package):
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(name, node.lineno, alias.name)
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(name, is_package, node.module, node.level)
                yield Import(name, node.lineno, base)
                for alias in node.names:  # ``from service import x`` imports the unit x
                    yield Import(name, node.lineno, f"{base}.{alias.name}")


def _absolute(module: str, is_package: bool, target: str | None, level: int) -> str:
    if level == 0:
        return target or ""
    parts = module.split(".")
    anchor = parts if is_package else parts[:-1]
    anchor = anchor[: len(anchor) - (level - 1)]
    return ".".join(anchor + ([target] if target else []))


def units_on_disk(root: Path, package: str) -> set[str]:
    return {
        p.stem if p.is_file() else p.name
        for p in (root / package).iterdir()
        if (p.suffix == ".py" or (p / "__init__.py").is_file()) and p.stem != "__init__"
    }


def unit(package: str, module: str, units: set[str]) -> str | None:
    """The unit ``module`` belongs to; None outside ``package``. A name imported from the
    top-level package that is no unit (``from service import __version__``) is the package's."""
    if module == package:
        return ""
    if not module.startswith(package + "."):
        return None
    parts = module.split(".")
    if parts[1] == TASKS and parts[3:4] == ["training"]:
        return TASK_TRAINING
    return parts[1] if parts[1] in units else ""


def task_packages(root: Path, package: str) -> set[str]:
    """The task packages on disk (``<package>/tasks/<name>/``)."""
    tasks = root / package / TASKS
    return (
        {p.name for p in tasks.iterdir() if (p / "__init__.py").is_file()}
        if tasks.is_dir()
        else set()
    )


def violations(root: Path, package: str, layers: Sequence[Sequence[str]]) -> list[str]:
    level = {name: i for i, layer in enumerate(layers) for name in layer}
    level.setdefault("", 0)  # the top-level package's own names sit below everything
    on_disk = units_on_disk(root, package)
    task_names = task_packages(root, package)
    found = [f"unit {u!r} is in no layer" for u in sorted(on_disk - set(level))]
    edges: dict[str, dict[str, Import]] = {}
    for item in imports(root, package):
        source = unit(package, item.module, on_disk)
        where = f"{item.module}:{item.line} imports {item.target}"
        assert source is not None
        if source not in level:
            continue  # reported above
        found += _foreign(source, item.target, where)
        found += _task_specific(package, source, item.target, task_names, where)
        target = unit(package, item.target, on_disk)
        if target is None or target == source:
            continue
        if target not in level:
            found.append(f"{where}: unit {target!r} is in no layer")
        elif level[target] > level[source]:
            found.append(f"{where}: upward, from layer {level[source]} to {level[target]}")
        edges.setdefault(source, {}).setdefault(target, item)
    found += [f"import cycle between {' -> '.join(c)}" for c in _cycles(edges)]
    return found


def _foreign(source: str, target: str, where: str) -> list[str]:
    grpc = target.split(".")[0].startswith("grpc") or "._proto" in f".{target}"
    torch = any(target == m or target.startswith(f"{m}.") for m in TORCH_MODULES)
    out = []
    if grpc and source != GRPC_HOME:
        out.append(f"{where}: grpc and generated code belong to {GRPC_HOME}")
    if torch and source not in TORCH_HOMES:
        out.append(f"{where}: torch belongs to {' and '.join(TORCH_HOMES)}")
    return out


def _task_specific(
    package: str, source: str, target: str, task_names: set[str], where: str
) -> list[str]:
    """Generic training names no task: it finds a task's training through the registry."""
    parts = target.split(".")
    named = parts[0] == package and parts[1:2] == [TASKS] and parts[2:3] != []
    if source == "training" and named and parts[2] in task_names:
        return [f"{where}: training reaches a task only through the task registry"]
    return []


def _cycles(edges: Mapping[str, Mapping[str, object]]) -> list[list[str]]:
    """One cycle per strongly connected group of units (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append([*sorted(group), min(group)])

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return groups


# --- the real tree --------------------------------------------------------------------------------


def test_service_keeps_its_layers() -> None:
    assert violations(ROOT, "service", LAYERS) == []


def test_every_unit_of_service_is_in_a_layer() -> None:
    declared = {name for layer in LAYERS for name in layer}
    assert units_on_disk(ROOT, "service") - declared == set()


# What ``loopserve serve`` imports: the command, the server it composes, every registered task.
SERVING_PROCESS = ("service.cli", "service.cli._local", "service.app", "service.tasks")


def torch_loaded_by(modules: Sequence[str]) -> list[str]:
    """The torch-family modules that importing ``modules`` loads, in a fresh interpreter."""
    code = (
        "import importlib, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    importlib.import_module(name)\n"
        f"torch = {TORCH_MODULES!r}\n"
        "loaded = [m for m in sys.modules if any(m == t or m.startswith(t + '.') for t in torch)]\n"
        "print(' '.join(sorted(loaded)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_the_serving_process_loads_no_torch() -> None:
    assert torch_loaded_by(SERVING_PROCESS) == []


@pytest.mark.slow  # imports torch, transformers and kornia: about 20 s on 2 cores
def test_training_code_is_what_loads_torch() -> None:
    """The check above can fail: a task's training side, named by the registry, loads torch."""
    from service import tasks

    training = [tasks.get(name).training for name in tasks.names()]
    assert "torch" in torch_loaded_by([*SERVING_PROCESS, *training])


# --- the checker itself, on small trees -----------------------------------------------------------

TOY_LAYERS = [["base"], ["mid", "side"], ["top"], ["api"], ["tasks"], ["training"], [TASK_TRAINING]]


def _tree(root: Path, files: Mapping[str, str]) -> Path:
    for name, text in {"toy/__init__.py": "", "toy/base.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_a_clean_tree_passes(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "toy/mid/__init__.py": "from toy.base import x\nfrom . import _inner\n",
            "toy/mid/_inner.py": "from toy import base\n",
            "toy/top.py": "import toy.mid\nfrom toy.side import y\n",
            "toy/side.py": "from toy.mid._inner import z\n",
            "toy/api/__init__.py": "import grpc\nfrom toy.api._proto import pb2\n",
            "toy/training/__init__.py": "import torch\nfrom toy import tasks\nfrom toy.tasks import get\n",
            "toy/tasks/__init__.py": "from toy.tasks.x import X\n",
            "toy/tasks/x/__init__.py": "import toy.base\n",
            "toy/tasks/x/training/__init__.py": (
                "import kornia\nimport torch\nfrom toy.tasks.x import X\nfrom toy.training import fit\n"
            ),
        },
    )
    assert violations(root, "toy", TOY_LAYERS) == []


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"toy/mid.py": "from toy.top import x\n"}, "upward, from layer 1 to 2"),
        ({"toy/mid.py": "def f():\n    import toy.top\n"}, "upward"),
        ({"toy/base.py": "from toy import mid\n", "toy/mid.py": ""}, "upward"),
        (
            {"toy/mid.py": "from toy import side\n", "toy/side.py": "import toy.mid\n"},
            "import cycle between mid -> side -> mid",
        ),
        ({"toy/mid/__init__.py": "from ..top import x\n"}, "upward"),
        ({"toy/top.py": "import grpc\n"}, "grpc and generated code belong to api"),
        ({"toy/top.py": "from toy.api._proto import pb2\n"}, "grpc"),
        ({"toy/mid.py": "from torch import nn\n"}, "torch belongs to training"),
        ({"toy/mid.py": "from safetensors.torch import save_file\n"}, "torch belongs"),
        (
            {"toy/tasks/x/__init__.py": "import kornia\n"},
            "torch belongs to training and tasks/*/training",
        ),
        ({"toy/tasks/x/_decode.py": "import torch\n"}, "torch belongs"),
        (
            {"toy/tasks/x/__init__.py": "from toy.tasks.x.training import fit\n"},
            "upward, from layer 4 to 6",
        ),
        ({"toy/top.py": "from toy.tasks.x import training\n"}, "upward"),
        (
            {"toy/training/__init__.py": "from toy.tasks.x.training import fit\n"},
            "training reaches a task only through the task registry",
        ),
        ({"toy/training/_build.py": "from toy.tasks import x\n"}, "through the task registry"),
        ({"toy/extra.py": ""}, "unit 'extra' is in no layer"),
    ],
)
def test_a_planted_violation_fails(tmp_path: Path, files: Mapping[str, str], expected: str) -> None:
    tasks = {
        f"toy/{p}/__init__.py": "" for p in ("tasks", "tasks/x", "tasks/x/training", "training")
    }
    root = _tree(tmp_path, {"toy/top.py": "", "toy/api/__init__.py": "", **tasks, **files})
    found = violations(root, "toy", TOY_LAYERS)
    assert any(expected in line for line in found), found
