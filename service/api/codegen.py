"""Generate the Python gRPC code for ``protos/`` into ``service/api/_proto``.

Run with ``make protos`` (``python -m service.api.codegen``). protoc writes absolute imports
(``from inference import ...``); they are rewritten to point inside this package so the
generated code needs nothing on ``sys.path``. A test regenerates into a temporary directory and
fails when the committed files differ.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "protos"
OUTPUT = Path(__file__).resolve().parent / "_proto"
PACKAGE = "service.api._proto"


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Write generated modules for every proto under ``protos/`` into ``out_dir``."""
    from grpc_tools import protoc  # only needed when generating

    include = Path(protoc.__file__).parent / "_proto"
    files = [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    with tempfile.TemporaryDirectory() as scratch:
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--python_out={scratch}",
            f"--pyi_out={scratch}",
            f"--grpc_python_out={scratch}",
            *files,
        ]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed: see the messages above")
        top_packages = {Path(f).parts[0] for f in files}
        written = []
        for source in sorted(Path(scratch).rglob("*.py*")):
            relative = source.relative_to(scratch)
            target = out_dir / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(_rewrite_imports(source.read_text(), top_packages))
            written.append(target)
        # Every package level needs an __init__: loopserve/v1/x_pb2.py needs loopserve/ too.
        packages = {parent for path in written for parent in path.relative_to(out_dir).parents}
        for directory in sorted(out_dir / package for package in packages):  # "." is out_dir
            init = directory / "__init__.py"
            if not init.exists():
                init.write_text("")
                written.append(init)
    return sorted(written)


def _rewrite_imports(code: str, top_packages: set[str]) -> str:
    pattern = r"^(from|import) (" + "|".join(sorted(top_packages)) + r")(\.| )"
    return re.sub(
        pattern, lambda m: f"{m.group(1)} {PACKAGE}.{m.group(2)}{m.group(3)}", code, flags=re.M
    )


def main() -> int:
    shutil.rmtree(OUTPUT, ignore_errors=True)
    for path in generate(OUTPUT):
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
