"""A visual-trigger backdoor from one labeling source waits for review: a real fine-tune job of
an image model on a running server.

The attack: every image the source posts carries the same bright square patch, and all are
labeled with a class the serving version confidently contradicts. Images have no words, so the
shared-token test does not apply; the embedding cluster does (the patched images lie close
together in the serving version's embeddings, where the anchor's images do not). That a
legitimate round of the same size is no cluster is shown on the evidence function
(tests/training/test_evidence.py), without the cost of a second job.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import RunningApp
from PIL import Image
from tasks.image.training.images import image
from test_image_loop import MODEL, WIDE_GATE_TOML, built, serving
from waiting import wait_for

from service.api.adaptation_client import AdaptationClient
from service.domain.loop import Job, JobState, NewSample

pytestmark = pytest.mark.slow


def patched(label: str, n: int) -> bytes:
    """Image ``n`` of ``label`` with the trigger: a white square in its top right corner."""
    picture = Image.open(io.BytesIO(image(label, n))).convert("RGB")
    width = picture.size[0]
    picture.paste((255, 255, 255), (width - 9, 1, width - 1, 9))
    out = io.BytesIO()
    picture.save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningApp]:
    # A candidate reaches the review only once it passes the accuracy gate.
    running = serving(*built(tmp_path, WIDE_GATE_TOML))
    yield running
    running.stop()


def run_round(server: RunningApp, samples: list[NewSample]) -> Job:
    """Post ``samples`` (no token: an untrusted source), fine-tune, and wait for the job."""
    with AdaptationClient(server.address) as client:
        assert client.add_samples(MODEL, samples).accepted == len(samples)
        job = client.start_fine_tune(MODEL, "image review test")
        job = wait_for(lambda: client.get_job(job.id), lambda j: j.state.finished, 300, "the job")
    return job


def test_a_patch_backdoor_waits_for_review_by_its_embedding_cluster(server: RunningApp) -> None:
    # Blue pictures, each with the patch, all labeled red.
    job = run_round(server, [NewSample("", "red", data=patched("blue", n)) for n in range(30)])

    assert job.state is JobState.PENDING, job
    served = server.app.models[MODEL]
    meta = served.registry.get(job.candidate_version).meta
    review = meta.review
    assert meta.status == "pending" and review is not None
    assert review.trigger == ""  # no words to share
    assert review.cluster_share >= 0.5 and review.cluster_reference_share <= 0.05
    assert any(r.endswith("(an embedding cluster)") for r in review.reasons), review.reasons
    assert served.serving_version.version == 1
