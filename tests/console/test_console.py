"""The web console served by a running server on the tiny model, driven over HTTP (httpx):
login and sessions, CSRF and same-origin checks, security headers, scopes, labels, undo,
rollback and purge through the same core as gRPC."""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections.abc import Callable, Iterator
from html import unescape
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from conftest import TINY_MODEL, RunningApp, write_tiny_definition
from console.console_actions import actions
from PIL import Image
from tasks.image.tiny_image_model import publish_version, write_definition
from waiting import wait_until

from service.api._proto.inference import grpc_predict_v2_pb2 as pb
from service.api._proto.inference.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from service.api.adaptation_client import AdaptationClient
from service.api.channel import ChannelOptions
from service.console import pages
from service.store import SQLiteStore

ADMIN, LABELER, VIEWER = "admin-token-0123456789", "label-token-0123456789", "view-token-0123456789"
TOKENS = f"ops:admin:{ADMIN};labeler:label:{LABELER};viewer:infer:{VIEWER}"
DRIFT = 'detectors = ["confidence"]\nwindow_size = 10\ntest_window_size = 20\nreference_size = 60\n'
MODEL_PAGES = ["labeling", "versions", "drift", "sources", "jobs"]


@pytest.fixture
def server(tmp_path: Path, tiny_backbone: Path, start_app: Callable[..., RunningApp]) -> RunningApp:
    models = tmp_path / "models"
    write_tiny_definition(models, tiny_backbone, drift=DRIFT)
    return start_app(models_dir=models, tokens=TOKENS, console_port=0)


class Browser:
    """An httpx client that sends what a browser on the console's own page would."""

    def __init__(self, server: RunningApp) -> None:
        self.origin = f"http://127.0.0.1:{server.app.console_port}"
        self.http = httpx.Client(base_url=self.origin, follow_redirects=False, timeout=30)
        self.csrf = ""

    def login(self, token: str) -> httpx.Response:
        answer = self.post("/login", {"token": token}, csrf=False)
        if answer.status_code == 303:
            self.csrf = self.csrf_of(self.http.get("/").text)
        return answer

    @staticmethod
    def csrf_of(html: str) -> str:
        found = re.search(r'name="csrf_token" value="([^"]+)"', html)
        assert found is not None, html
        return found.group(1)

    def post(
        self, path: str, fields: dict[str, str], csrf: bool = True, **headers: str
    ) -> httpx.Response:
        data = {**fields, "csrf_token": self.csrf} if csrf else fields
        sent = {"Origin": self.origin, **headers}
        return self.http.post(path, data=data, headers={k: v for k, v in sent.items() if v})


@pytest.fixture
def visitor(server: RunningApp) -> Iterator[Browser]:
    b = Browser(server)
    yield b
    b.http.close()


def send_traffic(server: RunningApp, count: int) -> None:
    texts = [f"hello my order is late {i % 7} please" for i in range(count)]
    metadata = (("authorization", f"Bearer {ADMIN}"),)
    with grpc.insecure_channel(server.address) as channel:
        stub = GRPCInferenceServiceStub(channel)
        for i, text in enumerate(texts):
            request = pb.ModelInferRequest(model_name=TINY_MODEL, id=f"req-{i}")
            tensor = request.inputs.add(name="text", datatype="BYTES", shape=[1])
            tensor.contents.bytes_contents.append(text.encode())
            stub.ModelInfer(request, timeout=10, metadata=metadata)
    assert server.app.drift is not None
    pool = server.app.drift.pools[TINY_MODEL]
    # The monitor's worker drains its queue into the pool.
    wait_until(lambda: len(pool) == count, 20, lambda: f"{len(pool)} of {count} in the pool")


def on_loop(server: RunningApp, coro: Any) -> Any:
    return asyncio.run_coroutine_threadsafe(coro, server.loop).result(30)


def serving_version(server: RunningApp) -> int:
    with AdaptationClient(server.address, options=ChannelOptions(token=ADMIN)) as client:
        return client.model_status(TINY_MODEL).serving_version


def stored(server: RunningApp) -> SQLiteStore:
    return SQLiteStore(server.app.settings.state_dir / "loopserve.db")


# --- sessions -----------------------------------------------------------------------------


def test_login_logout_and_pages_without_a_session(visitor: Browser) -> None:
    for path in ["/", *(f"/models/{TINY_MODEL}/{p}" for p in MODEL_PAGES)]:
        answer = visitor.http.get(path)
        assert (answer.status_code, answer.headers["location"]) == (303, "/login"), path
    polled = visitor.http.get("/fragments/overview", headers={"HX-Request": "true"})
    assert (polled.status_code, polled.headers["hx-redirect"]) == (204, "/login")
    refused = visitor.login("not-a-token-of-this-server")
    assert refused.status_code == 401 and "that token is not valid" in refused.text
    answer = visitor.login(LABELER)
    assert (answer.status_code, answer.headers["location"]) == (303, "/")
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
    assert "max-age=" in cookie
    overview = visitor.http.get("/")
    assert overview.status_code == 200 and 'data-testid="principal">labeler<' in overview.text
    assert 'hx-get="/fragments/overview"' in overview.text  # refreshes by itself
    fragment = visitor.http.get("/fragments/overview")
    assert fragment.status_code == 200 and 'data-testid="serving-version">1<' in fragment.text
    out = visitor.post("/logout", {})
    assert (out.status_code, out.headers["location"]) == (303, "/login")
    assert visitor.http.get("/").status_code == 303


def test_security_headers_on_every_response(visitor: Browser) -> None:
    visitor.login(VIEWER)
    answers = [
        visitor.http.get("/login"),
        visitor.http.get("/"),
        visitor.http.get("/static/console.css"),
        visitor.http.get("/static/vendor/htmx.min.js"),
        visitor.http.get("/nothing-here"),
        visitor.http.get(f"/models/{TINY_MODEL}/versions"),
        visitor.http.get("/models/nope/versions"),
        visitor.post(f"/models/{TINY_MODEL}/rollback", {"version": "2"}),  # 403
    ]
    for answer in answers:
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe" not in csp, answer.url
        assert "frame-ancestors 'none'" in csp
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["x-content-type-options"] == "nosniff"
    assert answers[5].headers["cache-control"] == "no-store"
    assert answers[6].status_code == 404 and "unknown model" in answers[6].text


def test_state_changes_need_the_csrf_token_the_origin_and_the_cookie(
    server: RunningApp, visitor: Browser
) -> None:
    visitor.login(ADMIN)
    no_csrf = visitor.post(f"/models/{TINY_MODEL}/rollback", {"version": "2"}, csrf=False)
    assert no_csrf.status_code == 403 and "csrf_token" in no_csrf.text
    wrong = visitor.post(
        f"/models/{TINY_MODEL}/rollback", {"version": "2", "csrf_token": "x"}, csrf=False
    )
    assert wrong.status_code == 403
    other_port = visitor.post(
        f"/models/{TINY_MODEL}/rollback", {"version": "2"}, Origin="http://127.0.0.1:1"
    )
    assert other_port.status_code == 403 and "own origin" in other_port.text
    no_origin = visitor.post(f"/models/{TINY_MODEL}/rollback", {"version": "2"}, Origin="")
    assert no_origin.status_code == 403
    by_referer = visitor.post(
        f"/models/{TINY_MODEL}/rollback",
        {"version": "2"},
        Origin="",
        Referer=f"http://evil.example/models/{TINY_MODEL}/versions",
    )
    assert by_referer.status_code == 403
    cookieless = httpx.post(
        f"{visitor.origin}/models/{TINY_MODEL}/rollback",
        data={"version": "2", "csrf_token": visitor.csrf},
        headers={"Origin": visitor.origin},
    )
    assert cookieless.status_code == 401 and "no console session" in cookieless.text
    assert serving_version(server) == 1


def test_a_viewer_sees_every_page_but_no_action_and_every_action_is_403(
    server: RunningApp, visitor: Browser
) -> None:
    visitor.login(VIEWER)
    for page in MODEL_PAGES:
        answer = visitor.http.get(f"/models/{TINY_MODEL}/{page}")
        assert answer.status_code == 200, page
        for action in (
            "rollback-",
            "approve-",
            "bulk-form",
            "purge-",
            "cancel-",
            'data-testid="accept"',
        ):
            assert action not in answer.text, (page, action)
    assert (
        "lacks the <code>label</code> scope"
        in visitor.http.get(f"/models/{TINY_MODEL}/labeling").text
    )
    for path, fields in actions():
        answer = visitor.post(path, fields)
        assert answer.status_code == 403, path
        assert "token 'viewer' (scopes: infer) lacks the scope" in unescape(answer.text), path
    image = visitor.http.get(f"/models/{TINY_MODEL}/candidates/req-1/image")
    assert image.status_code == 403
    assert serving_version(server) == 1


# --- labels ---------------------------------------------------------------------------------


def test_labels_are_stored_under_the_token_name_and_undo_deletes_exactly_that_sample(
    server: RunningApp, visitor: Browser
) -> None:
    send_traffic(server, 6)
    visitor.login(LABELER)
    page = visitor.http.get(f"/models/{TINY_MODEL}/labeling")
    assert page.status_code == 200 and page.text.count('data-testid="queue-item"') == 6
    assert 'data-testid="candidate-text">hello my order is late' in page.text
    ids = []
    for pid in ("req-0", "req-1", "req-2"):
        answer = visitor.post(
            f"/models/{TINY_MODEL}/labels",
            {"prediction_id": pid, "label": "complaint"},
            Accept="application/json",
        )
        assert answer.status_code == 200, answer.text
        ids += answer.json()["ids"]
    store = stored(server)
    try:
        assert [store.sample(TINY_MODEL, i).source for i in ids] == ["labeler"] * 3
        undo = visitor.post(
            f"/models/{TINY_MODEL}/labels/{ids[1]}/delete", {}, Accept="application/json"
        )
        assert undo.status_code == 200 and undo.json() == {"deleted": ids[1]}
        assert store.sample(TINY_MODEL, ids[1]) is None
        assert store.sample(TINY_MODEL, ids[0]) is not None
        assert store.sample(TINY_MODEL, ids[2]) is not None
        again = visitor.post(
            f"/models/{TINY_MODEL}/labels/{ids[1]}/delete", {}, Accept="application/json"
        )
        assert again.status_code == 404 and "no sample" in again.json()["error"]
        # Another source's sample is not the labeler's to undo.
        admin = Browser(server)
        admin.login(ADMIN)
        refused = admin.post(f"/models/{TINY_MODEL}/labels/{ids[0]}/delete", {})
        assert refused.status_code == 404 and "posted by 'ops'" in unescape(refused.text)
        assert store.sample(TINY_MODEL, ids[0]) is not None
    finally:
        store.close()
    left = visitor.http.get(f"/models/{TINY_MODEL}/labeling")
    # Labeled inputs leave the queue; the undone one is back, to be labeled anew.
    assert left.text.count('data-testid="queue-item"') == 4
    assert 'data-prediction-id="req-1"' in left.text
    assert 'id="labels-since">2<' in left.text


def test_bulk_accept_labels_every_suggestion_above_the_confidence(
    server: RunningApp, visitor: Browser
) -> None:
    send_traffic(server, 5)
    visitor.login(LABELER)
    answer = visitor.post(f"/models/{TINY_MODEL}/labels", {"min_confidence": "0"})
    assert (answer.status_code, answer.headers["location"]) == (
        303,
        f"/models/{TINY_MODEL}/labeling",
    )
    page = visitor.http.get(f"/models/{TINY_MODEL}/labeling")
    assert "5 labels stored" in page.text and 'data-testid="queue-empty"' in page.text
    refused = visitor.post(f"/models/{TINY_MODEL}/labels", {"min_confidence": "2"})
    assert refused.status_code == 400 and "min_confidence must be in [0, 1]" in refused.text


# --- versions, sources, jobs ----------------------------------------------------------------


def test_rollback_confirms_what_changes_then_changes_the_serving_version(
    server: RunningApp, visitor: Browser
) -> None:
    visitor.login(ADMIN)
    versions = visitor.http.get(f"/models/{TINY_MODEL}/versions")
    assert (
        'data-testid="rollback-2"' in versions.text
        and 'data-testid="accuracy-plot"' in versions.text
    )
    confirm = visitor.http.get(f"/models/{TINY_MODEL}/rollback", params={"version": "2"})
    assert (
        "Version 1 serves now" in confirm.text and "version 2 serves every request" in confirm.text
    )
    done = visitor.post(f"/models/{TINY_MODEL}/rollback", {"version": "2"})
    assert (done.status_code, done.headers["location"]) == (303, f"/models/{TINY_MODEL}/versions")
    assert serving_version(server) == 2
    assert "version 2 serves now" in visitor.http.get(f"/models/{TINY_MODEL}/versions").text
    again = visitor.post(f"/models/{TINY_MODEL}/rollback", {"version": "2"})
    assert again.status_code == 400 and "already serving" in again.text
    missing = visitor.post(f"/models/{TINY_MODEL}/rollback", {"version": "x"})
    assert missing.status_code == 400 and "version must be a whole number" in missing.text


def test_purge_names_the_count_and_shows_the_result(server: RunningApp, visitor: Browser) -> None:
    send_traffic(server, 4)
    labeler = Browser(server)
    labeler.login(LABELER)
    assert labeler.post(f"/models/{TINY_MODEL}/labels", {"min_confidence": "0"}).status_code == 303
    visitor.login(ADMIN)
    sources = visitor.http.get(f"/models/{TINY_MODEL}/sources")
    assert 'data-testid="purge-labeler"' in sources.text
    confirm = visitor.http.get(f"/models/{TINY_MODEL}/sources/labeler/purge")
    assert (
        "This deletes all 4 samples" in confirm.text
        and "Versions trained on them: none" in confirm.text
    )
    done = visitor.post(f"/models/{TINY_MODEL}/sources/labeler/purge", {})
    assert done.status_code == 200
    assert "Removed 4 samples of tiny posted by labeler" in done.text
    assert (
        'data-testid="source-labeler"' not in visitor.http.get(f"/models/{TINY_MODEL}/sources").text
    )
    gone = visitor.http.get(f"/models/{TINY_MODEL}/sources/labeler/purge")
    assert gone.status_code == 404


def test_cancel_of_a_job_that_does_not_run_is_refused(visitor: Browser) -> None:
    visitor.login(ADMIN)
    answer = visitor.post(f"/models/{TINY_MODEL}/jobs/no-such-job/cancel", {})
    assert answer.status_code == 404


def test_a_job_another_process_runs_is_shown_cancel_requested(
    server: RunningApp, visitor: Browser
) -> None:
    """A running job this server does not run (as a trainer's, seen from a serving replica):
    the cancel is recorded as a request, which the page shows until that process acts on it."""
    store = server.app.store
    assert store is not None
    job = store.create(TINY_MODEL, "manual", "run elsewhere", base_version=1, samples_upto=0)
    store.update(job.id, state="running", started=time.time())
    visitor.login(ADMIN)
    done = visitor.post(f"/models/{TINY_MODEL}/jobs/{job.id}/cancel", {})
    assert (done.status_code, done.headers["location"]) == (303, f"/models/{TINY_MODEL}/jobs")
    page = unescape(visitor.http.get(f"/models/{TINY_MODEL}/jobs").text)
    assert f"job {job.id}: cancel requested; the process that runs it ends it at its next" in page
    row = page[page.index(f'data-testid="job-{job.id}"') :].split("</tr>")[0]
    assert 'data-testid="state">running</span>' in row and "(cancel requested)" in row
    assert "cancelled by ops" in row and f'data-testid="cancel-{job.id}"' not in row
    stored = store.job(job.id)
    assert (stored.state.value, stored.error) == ("running", "cancelled by ops")


# --- page data, without a visitor -----------------------------------------------------------


def test_page_data_functions(server: RunningApp) -> None:
    console = server.app._console
    assert console is not None
    core = pages.Core(
        server.app.adaptation, server.app.inference, server.app.metrics, console.history
    )
    principal = server.app.settings.token_store().authenticate(VIEWER)
    on_loop(server, console.history.sample())
    (overview,) = on_loop(server, pages.overview(core))
    assert overview.model == TINY_MODEL and overview.serving_version == 1
    assert overview.drift_enabled and not overview.alarm and overview.job is None
    assert overview.next_step.startswith("a fine-tune starts after")
    labeling = on_loop(server, pages.labeling(core, TINY_MODEL, principal))
    assert not labeling.can_label and labeling.items == []
    versions = on_loop(server, pages.versions(core, TINY_MODEL, principal))
    assert [r.summary.version for r in versions.rows] == [2, 1]
    assert versions.serving_version == 1 and not versions.can_admin
    assert 0 <= versions.rows[1].holdout <= 1 and versions.rows[1].trigger == "first version"
    drift = on_loop(server, pages.drift(core, TINY_MODEL))
    assert drift.enabled and [d.detector for d in drift.detectors] == ["confidence"]
    assert len(drift.series["confidence"][0]) >= 1  # sampled at start and above
    assert drift.version == 1 and 0 <= drift.reference_age_s < 7 * 86400
    assert on_loop(server, pages.sources(core, TINY_MODEL, principal)).rows == []
    assert on_loop(server, pages.jobs(core, TINY_MODEL, principal)).rows == []


# --- images ---------------------------------------------------------------------------------


def test_an_image_candidate_is_shown_with_its_sniffed_type_inline_and_labeled_with_its_bytes(
    tmp_path: Path, start_app: Callable[..., RunningApp]
) -> None:
    models, state = tmp_path / "image-models", tmp_path / "image-state"
    write_definition(models, "colours", 32, DRIFT)
    publish_version(state, "colours", 32)
    server = start_app(models=("colours",), models_dir=models, state_dir=state, console_port=0)
    sent = {}
    with grpc.insecure_channel(server.address) as channel:
        stub = GRPCInferenceServiceStub(channel)
        for i, colour in enumerate([(200, 60, 60), (60, 200, 60)]):
            out = io.BytesIO()
            Image.new("RGB", (40, 40), colour).save(out, format="PNG")
            request = pb.ModelInferRequest(model_name="colours", id=f"img-{i}")
            tensor = request.inputs.add(name="image", datatype="BYTES", shape=[1])
            tensor.contents.bytes_contents.append(out.getvalue())
            stub.ModelInfer(request, timeout=20)
            sent[f"img-{i}"] = out.getvalue()
    assert server.app.drift is not None
    pool = server.app.drift.pools["colours"]
    wait_until(lambda: len(pool) >= 2, 20, "both images in the pool")
    visitor = Browser(server)  # no tokens: anonymous, every scope
    page = visitor.http.get("/models/colours/labeling")
    visitor.csrf = visitor.csrf_of(page.text)
    assert page.text.count('data-testid="candidate-image"') == 2
    assert 'src="/models/colours/candidates/img-0/image"' in page.text
    image = visitor.http.get("/models/colours/candidates/img-0/image")
    assert image.status_code == 200 and image.content == sent["img-0"]
    assert image.headers["content-type"] == "image/png"
    assert image.headers["content-disposition"] == "inline"
    assert image.headers["x-content-type-options"] == "nosniff"
    missing = visitor.http.get("/models/colours/candidates/img-9/image")
    assert missing.status_code == 404
    answer = visitor.post(
        "/models/colours/labels",
        {"prediction_id": "img-1", "label": "green"},
        Accept="application/json",
    )
    assert answer.status_code == 200, answer.text
    (sample_id,) = answer.json()["ids"]
    store = SQLiteStore(state / "loopserve.db")
    try:
        sample = store.sample("colours", sample_id)
        assert sample is not None and sample.source == "anonymous"
        assert store.blobs("colours", [sample.text]) == {sample.text: sent["img-1"]}
    finally:
        store.close()
    visitor.http.close()


def test_a_pending_version_shows_its_evidence_and_an_admin_rejects_it(
    tmp_path: Path, tiny_backbone: Path, state_dir: Path, start_app: Callable[..., RunningApp]
) -> None:
    from service.domain.review import LabelChange, ReviewEvidence
    from service.registry import ModelRegistry

    evidence = ReviewEvidence(
        sources={"junk": 30},
        traffic=50,
        flip_rate=0.2,
        flips=(LabelChange("greeting", "complaint", 10, ("hello there team",)),),
        reasons=("one source posted every sample of the round",),
    )
    ModelRegistry(state_dir, TINY_MODEL).update_meta(
        2, status="pending", parent=1, reason="samples: enough new labeled samples", review=evidence
    )
    models = tmp_path / "models"
    write_tiny_definition(models, tiny_backbone, drift=DRIFT)
    server = start_app(models_dir=models, tokens=TOKENS, console_port=0)
    viewer = Browser(server)
    viewer.login(VIEWER)
    seen = viewer.http.get(f"/models/{TINY_MODEL}/versions").text
    assert 'data-testid="evidence-2"' in seen and "reject-2" not in seen
    admin = Browser(server)
    admin.login(ADMIN)
    page = unescape(admin.http.get(f"/models/{TINY_MODEL}/versions").text)
    assert 'data-testid="approve-2"' in page and 'data-testid="reject-2"' in page
    assert "one source posted every sample of the round" in page and "junk (30)" in page
    assert "Flips on 50 recent inputs: 20.0 %" in page and "hello there team" in page
    done = admin.post(f"/models/{TINY_MODEL}/versions/2/reject", {})
    assert (done.status_code, done.headers["location"]) == (303, f"/models/{TINY_MODEL}/versions")
    with AdaptationClient(server.address, options=ChannelOptions(token=ADMIN)) as client:
        statuses = {v.version: v.status for v in client.list_versions(TINY_MODEL)}
    assert statuses == {1: "serving", 2: "rejected"}
    after = admin.http.get(f"/models/{TINY_MODEL}/versions").text
    assert "version 2 rejected" in after and "reject-2" not in after


def test_an_admin_cancels_a_running_job_and_it_is_not_retried_also_after_a_restart(
    server: RunningApp, visitor: Browser, start_app: Callable[..., RunningApp]
) -> None:
    send_traffic(server, 4)
    labeler = Browser(server)
    labeler.login(LABELER)
    assert labeler.post(f"/models/{TINY_MODEL}/labels", {"min_confidence": "0"}).status_code == 303
    with AdaptationClient(server.address, options=ChannelOptions(token=ADMIN)) as client:
        job = client.start_fine_tune(TINY_MODEL, "to be cancelled")
        log_file = server.app.settings.state_dir / "jobs" / job.id / "job.log"
        wait_until(log_file.exists, 60, "the job's process to start")
        visitor.login(ADMIN)
        page = visitor.http.get(f"/models/{TINY_MODEL}/jobs").text
        assert f'data-testid="cancel-{job.id}"' in page
        done = visitor.post(f"/models/{TINY_MODEL}/jobs/{job.id}/cancel", {})
        assert (done.status_code, done.headers["location"]) == (303, f"/models/{TINY_MODEL}/jobs")
        assert server.app.adaptation is not None
        server.app.adaptation.wait_idle(60)
        ended = client.get_job(job.id)
        assert (ended.state.value, ended.error) == ("failed", "cancelled by ops")
    # The default recipe retries a failed job once; not one an operator cancelled.
    assert server.app.adaptation._maybe_start(TINY_MODEL) is None
    with AdaptationClient(server.address, options=ChannelOptions(token=ADMIN)) as client:
        latest = client.model_status(TINY_MODEL).job
    assert latest is not None and latest.id == job.id  # nor by the loop's own follow-up
    again = visitor.post(f"/models/{TINY_MODEL}/jobs/{job.id}/cancel", {})
    assert again.status_code == 409
    assert f"job {job.id} of '{TINY_MODEL}' has already ended (failed)" in unescape(again.text)

    # The cancellation is in the store: a restarted server (whose start looks for work) does not
    # retry the job either, and shows it cancelled.
    server.stop()
    restarted = start_app(models_dir=server.app.settings.models_dir, tokens=TOKENS, console_port=0)
    assert restarted.app.adaptation is not None
    assert restarted.app.adaptation._maybe_start(TINY_MODEL) is None
    with AdaptationClient(restarted.address, options=ChannelOptions(token=ADMIN)) as client:
        latest = client.model_status(TINY_MODEL).job
    assert latest is not None and (latest.id, latest.error) == (job.id, "cancelled by ops")
    admin = Browser(restarted)
    admin.login(ADMIN)
    row = admin.http.get(f"/models/{TINY_MODEL}/jobs").text
    assert "cancelled by ops" in row and f'data-testid="cancel-{job.id}"' not in row
