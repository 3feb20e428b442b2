"""The closed loop of an image model through the real ``loopserve serve`` process: a standard V2
client (tritonclient) classifies encoded images, labeled images posted with AddSamples train a
candidate that is promoted and swapped in, and the same client then gets its labels from the
new version."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tasks.image.training.images import image, suffix
from test_cli import ServerProcess, run_client
from test_image_loop import LABELS, MODEL, WIDE_GATE_TOML, built
from waiting import wait_for

from service.api.adaptation_client import AdaptationClient
from service.domain.loop import JobState, ModelStatus, NewSample

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    # This test is about the path from posted images to a swapped-in version.
    models, state = built(tmp_path, WIDE_GATE_TOML)
    process = ServerProcess(models, state, model=MODEL)
    yield process
    if process.proc.poll() is None:
        process.proc.kill()
        process.proc.wait(10)


def test_images_posted_to_the_served_process_train_a_version_a_v2_client_then_gets(
    server: ServerProcess, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{server.grpc_port}"
    # One JPEG and one PNG (image() alternates the format by its seed).
    files = []
    for n, label in ((100, "red"), (101, "blue")):
        data = image(label, n)
        path = tmp_path / f"{label}{suffix(data)}"
        path.write_bytes(data)
        files.append(str(path))
    assert {Path(f).suffix for f in files} == {".jpg", ".png"}

    before = run_client("images", address, MODEL, *files)
    assert before["version"] == "1" and before["version_ready"]
    assert all(label in LABELS for label in before["labels"]) and len(before["labels"]) == 2

    posted = [NewSample("", label, data=image(label, n)) for label in LABELS for n in range(8, 20)]
    with AdaptationClient(address) as client:
        assert client.add_samples(MODEL, posted).accepted == 24
        job = client.start_fine_tune(MODEL, "image end-to-end test")
        status = _wait(client, lambda s: s.job is not None and s.job.state.finished, server)
        assert status.job is not None and status.job.id == job.id
        assert status.job.state is JobState.PROMOTED, (status.job, "".join(server.log))
        new = status.job.candidate_version
        assert new == 2
        # The swap follows the promotion: wait for the served version to change.
        _wait(client, lambda s: s.serving_version == new, server)
        versions = {v.version: v.status for v in client.list_versions(MODEL)}
        assert versions == {1: "retired", 2: "serving"}

    after = run_client("images", address, MODEL, *files)
    assert after["version"] == "2" and after["version_ready"]
    assert "2" in after["metadata_versions"]
    assert all(label in LABELS for label in after["labels"]) and len(after["labels"]) == 2
    assert server.proc.poll() is None, "".join(server.log)


def _wait(
    client: AdaptationClient, done: Any, server: ServerProcess, timeout: float = 300
) -> ModelStatus:
    """Poll GetModelStatus until ``done(status)``; fails with the server's log at the deadline or
    as soon as the server exits."""

    def status() -> ModelStatus:
        assert server.proc.poll() is None, "".join(server.log)
        return client.model_status(MODEL)

    return wait_for(status, done, timeout, lambda: "".join(server.log))
