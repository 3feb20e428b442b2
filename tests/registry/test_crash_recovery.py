"""What a crash leaves in a registry, and what start-up makes of it (service.registry).

A promotion writes a staging directory, renames it to ``versions/<n>`` and then flips
``current``. A process killed at any point leaves one of the states built here; a restart must
serve the last version ``current`` named, complete, and remove the crashed writer's staging
directory (a fine-tune's is about 100 MB) without touching one a live writer still fills.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from service.domain.versions import VersionMeta
from service.registry import ModelRegistry, VersionInfo

ROOT = Path(__file__).resolve().parents[2]
MODEL = "fake"
LABELS = ["a", "b"]


def _publish(registry: ModelRegistry, payload: str) -> VersionInfo:
    with registry.stage(None) as staged:
        (staged.path / "model.onnx").write_text(payload)
        return registry.publish(staged, VersionMeta(labels=tuple(LABELS), max_seq_length=32))


def _staging(registry: ModelRegistry) -> list[str]:
    return sorted(p.name for p in registry.root.iterdir() if p.name.startswith("staging-"))


def _writer(state: Path, then: str) -> subprocess.Popen[str]:
    """A process that stages a version of ``MODEL``, prints its staging path, then ``then``."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from service.domain.versions import VersionMeta\n"
        "from service.registry import ModelRegistry\n"
        f"registry = ModelRegistry(Path(sys.argv[1]), {MODEL!r})\n"
        "with registry.stage(1) as staged:\n"
        "    (staged.path / 'model.onnx').write_bytes(b'x' * 100_000)\n"
        f"    {then}\n"
        "    print(staged.path, flush=True)\n"
        "    time.sleep(60)\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", script, str(state)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )


def test_a_writer_killed_while_staging_leaves_a_directory_start_up_removes(
    tmp_path: Path,
) -> None:
    registry = ModelRegistry(tmp_path, MODEL)
    _publish(registry, "one")
    registry.set_current(1)
    writer = _writer(tmp_path, then="pass")
    assert writer.stdout is not None
    staged = Path(writer.stdout.readline().strip())
    assert staged.is_dir()

    assert registry.remove_stale_staging() == []  # its writer still runs: kept
    assert staged.is_dir()
    writer.send_signal(signal.SIGKILL)
    assert writer.wait(10) == -signal.SIGKILL
    assert staged.is_dir()  # nothing cleaned up after the kill

    restarted = ModelRegistry(tmp_path, MODEL)
    assert restarted.remove_stale_staging() == [staged]

    assert _staging(restarted) == []
    current = restarted.current()
    assert current is not None and current.version == 1
    assert [v.version for v in restarted.versions()] == [1]


def test_a_promotion_killed_after_publishing_before_current_flips_serves_the_last_version(
    tmp_path: Path,
) -> None:
    registry = ModelRegistry(tmp_path, MODEL)
    _publish(registry, "one")
    registry.set_current(1)
    # Published (renamed into versions/2, complete) and killed before set_current(2).
    writer = _writer(
        tmp_path, then="registry.publish(staged, VersionMeta(labels=('a', 'b'), max_seq_length=32))"
    )
    assert writer.stdout is not None
    writer.stdout.readline()
    writer.send_signal(signal.SIGKILL)
    assert writer.wait(10) == -signal.SIGKILL

    restarted = ModelRegistry(tmp_path, MODEL)
    restarted.remove_stale_staging()

    current = restarted.current()
    assert current is not None and current.version == 1
    assert (current.path / "model.onnx").read_text() == "one"
    assert [v.version for v in restarted.versions()] == [1, 2]
    assert (restarted.get(2).path / "model.onnx").stat().st_size == 100_000
    assert not (restarted.get(2).path / ".owner.lock").exists()
    assert _staging(restarted) == []


def test_start_up_after_a_crash_mid_promotion_on_disk(tmp_path: Path) -> None:
    """Every crash state at once, as files: a staging directory from before owner locks, a
    pointer temporary, a version directory without meta.json, a complete unpublished version."""
    registry = ModelRegistry(tmp_path, MODEL)
    _publish(registry, "one")
    _publish(registry, "two")
    registry.set_current(1)
    old_staging = registry.root / "staging-abc123"
    old_staging.mkdir()
    (old_staging / "model.onnx").write_bytes(b"x" * 1000)
    pointer_tmp = registry.root / ".current.tmp-4242-1"
    pointer_tmp.write_text("2\n")
    partial = registry.versions_dir / "3"
    partial.mkdir()
    (partial / "model.onnx").write_bytes(b"half")

    restarted = ModelRegistry(tmp_path, MODEL)
    removed = restarted.remove_stale_staging()

    assert sorted(removed) == sorted([old_staging, pointer_tmp])
    current = restarted.current()
    assert current is not None and current.version == 1
    assert [v.version for v in restarted.versions()] == [1, 2]  # the partial one is skipped
    assert _publish(restarted, "three").version == 4  # and its number is not reused
    assert json.loads((restarted.versions_dir / "4" / "meta.json").read_text())["version"] == 4


def test_a_staging_directory_this_process_still_writes_is_kept(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path, MODEL)
    with registry.stage(None) as staged:
        (staged.path / "model.onnx").write_text("pending")

        assert ModelRegistry(tmp_path, MODEL).remove_stale_staging() == []

        assert staged.path.is_dir()
        info = registry.publish(staged, VersionMeta(labels=tuple(LABELS), max_seq_length=32))
    assert (info.path / "model.onnx").read_text() == "pending"
    assert _staging(registry) == []
