"""The committed generated gRPC code under service/api/_proto matches what codegen produces."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.api import codegen

REGENERATE = "run `make protos` (python -m service.api.codegen) and commit the result"
# protoc writes `from inference import ...`; codegen rewrites those to service.api._proto.inference.
DIRECT_IMPORT = re.compile(r"^\s*(from|import)\s+inference(\.|\s|$)", re.M)


def _committed_files() -> dict[Path, Path]:
    return {
        path.relative_to(codegen.OUTPUT): path
        for path in codegen.OUTPUT.rglob("*")
        if path.is_file() and path.suffix in (".py", ".pyi") and "__pycache__" not in path.parts
    }


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, Path]:
    out_dir = tmp_path_factory.mktemp("proto")
    written = codegen.generate(out_dir)
    return {path.relative_to(out_dir): path for path in written}


def test_there_are_protos_to_generate() -> None:
    assert codegen.proto_files(), f"no .proto files under {codegen.PROTO_ROOT}"


def test_generated_file_set_matches_committed(generated: dict[Path, Path]) -> None:
    committed = _committed_files()

    missing = sorted(str(p) for p in set(generated) - set(committed))
    extra = sorted(str(p) for p in set(committed) - set(generated))
    assert not missing and not extra, (
        f"service/api/_proto is out of date (not committed: {missing}; stale: {extra}); "
        f"{REGENERATE}"
    )


def test_generated_files_are_byte_identical_to_committed(generated: dict[Path, Path]) -> None:
    committed = _committed_files()

    differing = sorted(
        str(relative)
        for relative, path in generated.items()
        if relative in committed and path.read_bytes() != committed[relative].read_bytes()
    )
    assert not differing, (
        f"generated code differs from the committed files {differing}; {REGENERATE}"
    )


def test_generated_modules_do_not_import_top_level_inference(generated: dict[Path, Path]) -> None:
    for label, files in (("generated", generated), ("committed", _committed_files())):
        offenders = {
            str(relative): match.group(0).strip()
            for relative, path in files.items()
            if (match := DIRECT_IMPORT.search(path.read_text(encoding="utf-8")))
        }
        assert not offenders, f"{label} modules import the top-level package directly: {offenders}"


def test_grpc_module_imports_messages_through_the_package(generated: dict[Path, Path]) -> None:
    grpc_module = generated[Path("inference/grpc_predict_v2_pb2_grpc.py")].read_text()

    assert "from service.api._proto.inference import grpc_predict_v2_pb2" in grpc_module


def test_rewrite_imports_only_touches_the_proto_packages() -> None:
    code = (
        "from inference import a_pb2 as x\n"
        "import inference.b_pb2\n"
        "from inferences import c\n"
        "from google.protobuf import descriptor\n"
    )

    rewritten = codegen._rewrite_imports(code, {"inference"})

    assert rewritten.splitlines() == [
        "from service.api._proto.inference import a_pb2 as x",
        "import service.api._proto.inference.b_pb2",
        "from inferences import c",
        "from google.protobuf import descriptor",
    ]
