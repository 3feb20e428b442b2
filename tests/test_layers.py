"""The package layers of ``service``: no import cycles between packages, no upward imports, grpc
only in the api, torch only in training.

Every module is parsed, imports inside functions included (a lazy import is still a
dependency). A module ``service/x.py`` and a package ``service/x/`` are both the unit ``x``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lowest first. A unit may import units of its own layer or below; within a layer only while no
# cycle forms. "" is the top-level package itself (``service/__init__.py``: the version).
LAYERS: list[list[str]] = [
    ["", "errors", "types", "domain"],
    ["config", "security", "calibration", "priority", "metrics", "disk_full"],
    ["runtime", "registry", "store"],
    ["tasks", "training", "serving", "inference"],
    ["drift"],
    ["adaptation"],
    ["cluster"],
    ["api", "web", "console"],
    ["app"],
    ["cli"],
]
GRPC_HOME = "api"  # the only unit that speaks the wire protocol
TORCH_HOME = "training"  # the only unit that imports torch (serving runs ONNX Runtime)


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
    first = module.split(".")[1]
    return first if first in units else ""


def violations(root: Path, package: str, layers: Sequence[Sequence[str]]) -> list[str]:
    level = {name: i for i, layer in enumerate(layers) for name in layer}
    level.setdefault("", 0)  # the top-level package's own names sit below everything
    on_disk = units_on_disk(root, package)
    found = [f"unit {u!r} is in no layer" for u in sorted(on_disk - set(level))]
    edges: dict[str, dict[str, Import]] = {}
    for item in imports(root, package):
        source = unit(package, item.module, on_disk)
        where = f"{item.module}:{item.line} imports {item.target}"
        assert source is not None
        if source not in level:
            continue  # reported above
        found += _foreign(source, item.target, where)
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
    torch = target == "torch" or target.startswith(("torch.", "safetensors.torch"))
    out = []
    if grpc and source != GRPC_HOME:
        out.append(f"{where}: grpc and generated code belong to {GRPC_HOME}")
    if torch and source != TORCH_HOME:
        out.append(f"{where}: torch belongs to {TORCH_HOME}")
    return out


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


# --- the checker itself, on small trees -----------------------------------------------------------

TOY_LAYERS = [["base"], ["mid", "side"], ["top"], ["api"], ["training"]]


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
            "toy/training/__init__.py": "import torch\n",
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
        ({"toy/extra.py": ""}, "unit 'extra' is in no layer"),
    ],
)
def test_a_planted_violation_fails(tmp_path: Path, files: Mapping[str, str], expected: str) -> None:
    root = _tree(tmp_path, {"toy/top.py": "", "toy/api/__init__.py": "", **files})
    found = violations(root, "toy", TOY_LAYERS)
    assert any(expected in line for line in found), found
