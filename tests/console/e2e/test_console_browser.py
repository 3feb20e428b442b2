"""The web console end to end: a real ``loopserve serve`` process driven in Debian's chromium by
Playwright. Login and logout, labeling by keyboard and in bulk, images in the queue, rollback,
purge and job cancellation with their confirmations, what a viewer may do, the refusals of forged
requests, and accessibility (axe-core) of the main pages.

One server serves the whole module (its state carries from test to test, so each test reads the
state it starts from rather than assuming it). Screenshots of the pages go to docs/console/ when
LOOPSERVE_SCREENSHOTS=1, otherwise to a temporary directory.
"""

from __future__ import annotations

import io
import itertools
import os
from collections.abc import Callable, Iterator
from html import unescape
from pathlib import Path
from typing import Any

import chromium
import console_process
import pytest
from conftest import TINY_LABELS, TINY_MODEL
from console.console_actions import actions
from console_process import IMAGE_MODEL, ConsoleProcess
from PIL import Image
from playwright.sync_api import APIResponse, BrowserContext, Page, expect, sync_playwright
from playwright.sync_api import Browser as Chromium
from waiting import wait_until

from service.domain.loop import NewSample

pytestmark = [pytest.mark.browser, pytest.mark.slow]

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
DOCS = Path(__file__).resolve().parents[3] / "docs" / "console"
MODEL_PAGES = ["labeling", "versions", "drift", "sources", "jobs"]
VIEWPORT = {"width": 1280, "height": 800}


# --- the server and the browser -------------------------------------------------------------


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict[str, Any]:
    """pytest-playwright's launch options: Debian's chromium (skips without it)."""
    return chromium.launch_args()


@pytest.fixture(scope="module")
def server(
    browser_type_launch_args: dict[str, Any],  # no chromium: skip before building anything
    tmp_path_factory: pytest.TempPathFactory,
    built_state: Path,
    tiny_backbone: Path,
) -> Iterator[ConsoleProcess]:
    started = console_process.start(
        tmp_path_factory.mktemp("console-e2e"), built_state, tiny_backbone
    )
    yield started
    assert started.stop() == 0, started.member.text()


@pytest.fixture(scope="module")
def browser_context_args(server: ConsoleProcess) -> dict[str, Any]:
    # A fixed viewport, locale and time zone: screenshots that look alike from run to run.
    return {
        "base_url": server.url,
        "viewport": VIEWPORT,
        "locale": "en-US",
        "timezone_id": "UTC",
        "reduced_motion": "reduce",
    }


@pytest.fixture(scope="module")
def chromium_browser(browser_type_launch_args: dict[str, Any]) -> Iterator[Chromium]:
    """This module's own Playwright and browser, closed when the module ends. pytest-playwright's
    session-wide ones would keep the sync API's event loop running in the main thread for the
    rest of the session, and every later test that calls asyncio.run() would fail."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(**browser_type_launch_args)
        yield browser
        browser.close()


@pytest.fixture
def new_context(
    chromium_browser: Chromium, browser_context_args: dict[str, Any]
) -> Iterator[Callable[..., BrowserContext]]:
    """Fresh browser contexts (one cookie jar each) on this module's browser, closed after the
    test."""
    opened: list[BrowserContext] = []

    def make(**overrides: Any) -> BrowserContext:
        opened.append(chromium_browser.new_context(**{**browser_context_args, **overrides}))
        return opened[-1]

    yield make
    for context in opened:
        context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: the docs only when asked, so that a test run leaves the tree as
    it was."""
    if os.environ.get("LOOPSERVE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        return DOCS
    return tmp_path_factory.mktemp("screenshots")


def snap(page: Page, shots: Path, name: str) -> None:
    page.wait_for_load_state("networkidle")
    page.screenshot(path=shots / f"{name}.png", animations="disabled", caret="hide")


class Browser:
    """Opens pages in fresh contexts (one cookie jar each) and records what the page itself
    reports as wrong: script errors and Content-Security-Policy refusals."""

    def __init__(self, new_context: Callable[..., BrowserContext], server: ConsoleProcess) -> None:
        self._new_context = new_context
        self.server = server
        self.errors: list[str] = []

    def page(self, token: str | None = None, **context: Any) -> Page:
        page = self._new_context(**context).new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))
        page.on("console", lambda m: self._console(page, m.type, m.text))
        if token is not None:
            log_in(page, token)
        return page

    def _console(self, page: Page, kind: str, text: str) -> None:
        if kind == "error" and "Failed to load resource" not in text:  # refusals are asserted
            self.errors.append(f"{page.url}: {text}")


@pytest.fixture
def browser_pages(
    new_context: Callable[..., BrowserContext], server: ConsoleProcess
) -> Iterator[Browser]:
    opened = Browser(new_context, server)
    yield opened
    assert opened.errors == [], "the pages reported errors"


def log_in(page: Page, token: str) -> None:
    page.goto("/login")
    page.fill("#token", token)
    page.press("#token", "Enter")
    page.wait_for_url("**/")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


def csrf(page: Page) -> str:
    value = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert value
    return value


def post(page: Page, path: str, fields: dict[str, str], **headers: str) -> APIResponse:
    """A form POST with the page's cookies, not following a redirect."""
    return page.request.post(path, form=fields, headers=headers, max_redirects=0)


# --- login ----------------------------------------------------------------------------------


def test_login_shows_the_overview_and_logout_ends_the_session(
    browser_pages: Browser, server: ConsoleProcess, shots: Path
) -> None:
    page = browser_pages.page()
    page.goto("/")
    page.wait_for_url("**/login")
    page.fill("#token", "not-a-token-of-this-server")
    page.click("#login")
    expect(page.get_by_test_id("login-error")).to_have_text(
        "that token is not valid on this server"
    )
    log_in(page, server.tokens.admin)
    expect(page.get_by_test_id("principal")).to_have_text("ops")
    for model in (TINY_MODEL, IMAGE_MODEL):
        card = page.get_by_test_id(f"model-{model}")
        expect(card.get_by_test_id("serving-version")).to_have_text(
            str(server.serving_version(model))
        )
    snap(page, shots, "overview")

    page.click("#logout")
    page.wait_for_url("**/login")
    for path in ["/", *(f"/models/{TINY_MODEL}/{p}" for p in MODEL_PAGES)]:
        answer = page.request.get(path, max_redirects=0)
        assert (answer.status, answer.headers["location"]) == (303, "/login"), path
    page.goto(f"/models/{TINY_MODEL}/versions")
    page.wait_for_url("**/login")


# --- labeling -------------------------------------------------------------------------------


def current(page: Page) -> tuple[str, str]:
    """The prediction id and the suggestion of the item the queue shows."""
    item = page.locator("#queue li.item.current")
    expect(item).to_have_count(1)
    return item.get_attribute("data-prediction-id") or "", item.get_attribute(
        "data-suggestion"
    ) or ""


def press(page: Page, key: str, status: str, moves_from: str | None) -> None:
    """Press ``key`` on the queue and wait for its outcome: the status line, and the queue
    moving on from ``moves_from`` (the same item shown again after an undo: None)."""
    page.keyboard.press(key)
    expect(page.get_by_test_id("queue-status")).to_have_text(status)
    if moves_from is not None:
        expect(page.locator("#queue li.item.current")).not_to_have_attribute(
            "data-prediction-id", moves_from
        )


def test_labeling_by_keyboard_stores_exactly_the_labels_chosen_under_the_token_name(
    browser_pages: Browser, server: ConsoleProcess, shots: Path
) -> None:
    texts = {
        f"kb-{i}": f"{'hello' if i % 2 else 'why'} my order is late {i} please" for i in range(8)
    }
    server.infer_texts(texts)
    before = server.source_counts().get("labeler", 0)
    page = browser_pages.page(server.tokens.labeler)
    page.goto(f"/models/{TINY_MODEL}/labeling")
    labels = (page.locator("#queue").get_attribute("data-labels") or "").split("\n")
    assert labels == TINY_LABELS
    snap(page, shots, "labeling-text")
    expected: dict[str, str] = {}

    first, suggestion = current(page)
    press(page, "Enter", f"Stored {suggestion}.", moves_from=first)  # the suggestion
    expected[first] = suggestion
    second, _ = current(page)
    press(page, "2", f"Stored {labels[1]}.", moves_from=second)  # another label, by its digit
    press(page, "u", "Undone: the label is deleted.", moves_from=None)
    assert current(page)[0] == second
    press(page, "3", f"Stored {labels[2]}.", moves_from=second)  # labeled again
    expected[second] = labels[2]
    skipped, _ = current(page)
    press(page, "s", "Skipped.", moves_from=skipped)
    for key in ("Enter", "1", "Enter"):
        shown, suggestion = current(page)
        label = suggestion if key == "Enter" else labels[int(key) - 1]
        press(page, key, f"Stored {label}.", moves_from=shown)
        expected[shown] = label

    assert len(expected) == 5 and skipped not in expected
    ours = {
        k: v for k, v in server.stored_labels("labeler").items() if k in expected or k == skipped
    }
    assert ours == expected
    assert server.source_counts()["labeler"] == before + 5  # over gRPC: the undone one is gone
    assert not {c.prediction_id for c in server.candidates(TINY_MODEL)} & set(expected)


def threshold(confidences: list[float]) -> float:
    """A confidence on the form's 0.01 grid with candidates on both sides, well clear of each."""
    ordered = sorted(set(confidences))
    for low, high in itertools.pairwise(ordered):
        grid = round((low + high) / 2, 2)
        if low + 0.002 < grid < high - 0.002:
            return grid
    pytest.fail(f"no threshold separates the candidates' confidences {ordered}")


def test_bulk_accept_labels_every_suggestion_at_or_above_the_threshold(
    browser_pages: Browser, server: ConsoleProcess
) -> None:
    # Keyword texts the model is sure of, and filler it is not.
    texts = {
        "bulk-0": "hello hi welcome team", "bulk-1": "why how what when where",
        "bulk-2": "broken awful terrible late", "bulk-3": "the a my your",
        "bulk-4": "order today is it", "bulk-5": "this please thanks team",
    }  # fmt: skip
    server.infer_texts(texts)
    queued = server.candidates(TINY_MODEL)
    floor = threshold([c.confidence for c in queued])
    expected = {c.prediction_id: c.predicted_label for c in queued if c.confidence >= floor}
    assert 0 < len(expected) < len(queued)
    page = browser_pages.page(server.tokens.admin)
    page.goto(f"/models/{TINY_MODEL}/labeling")
    page.fill("#min-confidence", f"{floor:.2f}")
    page.press("#min-confidence", "Enter")  # submits the bulk form
    expect(page.get_by_test_id("notice")).to_have_text(f"{len(expected)} labels stored")
    queued_ids = {c.prediction_id for c in queued}
    assert {k: v for k, v in server.stored_labels("ops").items() if k in queued_ids} == expected
    left = {c.prediction_id for c in server.candidates(TINY_MODEL)}
    assert left == queued_ids - set(expected)


def test_images_in_the_queue_of_the_image_model_are_not_broken(
    browser_pages: Browser, server: ConsoleProcess, shots: Path
) -> None:
    images = {}
    for i, (fmt, colour) in enumerate(
        [("PNG", (200, 40, 40)), ("JPEG", (40, 190, 40)), ("WEBP", (40, 40, 210))]
    ):
        out = io.BytesIO()
        Image.new("RGB", (160 + 40 * i, 120), colour).save(out, format=fmt)
        images[f"img-{i}"] = out.getvalue()
    server.infer(IMAGE_MODEL, images, "image")
    page = browser_pages.page(server.tokens.labeler)
    page.goto(f"/models/{IMAGE_MODEL}/labeling")
    shown = page.get_by_test_id("candidate-image")
    expect(shown).to_have_count(len(server.candidates(IMAGE_MODEL)))
    page.wait_for_function("Array.from(document.images).every((img) => img.complete)")
    widths = page.eval_on_selector_all(
        "img[data-testid=candidate-image]",
        "(imgs) => imgs.map((img) => [img.getAttribute('src'), img.naturalWidth])",
    )
    assert widths and all(width > 0 for _, width in widths), widths
    assert {f"/models/{IMAGE_MODEL}/candidates/{k}/image" for k in images} <= {s for s, _ in widths}
    snap(page, shots, "labeling-image")


# --- versions, sources, jobs ----------------------------------------------------------------


def test_rollback_after_its_confirmation_changes_the_serving_version(
    browser_pages: Browser, server: ConsoleProcess, shots: Path
) -> None:
    serving = server.serving_version()
    target = 2 if serving == 1 else 1
    page = browser_pages.page(server.tokens.admin)
    page.goto(f"/models/{TINY_MODEL}/versions")
    page.get_by_test_id(f"rollback-{target}").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        f"Roll back {TINY_MODEL} to version {target}?"
    )
    expect(page.get_by_test_id("rollback-change")).to_contain_text(f"Version {serving} serves now")
    assert server.serving_version() == serving  # the confirmation changes nothing
    page.click("#confirm-rollback")
    page.wait_for_url(f"**/models/{TINY_MODEL}/versions")
    expect(page.get_by_test_id("notice")).to_have_text(f"version {target} serves now")
    assert server.serving_version() == target
    expect(page.get_by_test_id("lineage")).to_contain_text(f"version {target} serves")
    snap(page, shots, "versions")


def test_purge_of_a_source_after_its_confirmation(
    browser_pages: Browser, server: ConsoleProcess, shots: Path
) -> None:
    with server.client(server.tokens.labeler) as client:
        client.add_samples(
            TINY_MODEL, [NewSample(f"hello purge me {i}", "greeting") for i in range(3)]
        )
    count = server.source_counts()["labeler"]
    page = browser_pages.page(server.tokens.admin)
    page.goto(f"/models/{TINY_MODEL}/sources")
    expect(page.get_by_test_id("source-labeler").get_by_test_id("count")).to_have_text(str(count))
    snap(page, shots, "sources")
    page.get_by_test_id("purge-labeler").click()
    expect(page.get_by_test_id("purge-what")).to_contain_text(
        f"This deletes all {count} samples of {TINY_MODEL} posted by labeler"
    )
    assert server.source_counts()["labeler"] == count  # the confirmation changes nothing
    page.click("#confirm-purge")
    expect(page.get_by_test_id("purge-result")).to_contain_text(
        f"Removed {count} samples of {TINY_MODEL} posted by labeler"
    )
    assert "labeler" not in server.source_counts()
    page.goto(f"/models/{TINY_MODEL}/sources")
    expect(page.get_by_test_id("source-labeler")).to_have_count(0)


def test_a_running_job_cancelled_from_the_jobs_page_fails_as_cancelled(
    browser_pages: Browser, server: ConsoleProcess, shots: Path
) -> None:
    with server.client() as client:
        client.add_samples(
            TINY_MODEL, [NewSample(f"why is it late {i}", "question") for i in range(4)]
        )
        job = client.start_fine_tune(TINY_MODEL, "to be cancelled")
    log_file = server.state_dir / "jobs" / job.id / "job.log"
    # The job's process has started once it has written to its log.
    wait_until(lambda: log_file.exists() and log_file.stat().st_size > 0, 60, "the job's process")
    page = browser_pages.page(server.tokens.admin)
    page.goto(f"/models/{TINY_MODEL}/jobs")
    page.get_by_test_id(f"cancel-{job.id}").click()
    expect(page.get_by_test_id("notice")).to_have_text(f"job {job.id} cancelled")

    def ended() -> bool:
        with server.client() as client:
            return client.get_job(job.id).state.finished

    wait_until(ended, 60, "the cancelled job to end")
    page.reload()
    row = page.get_by_test_id(f"job-{job.id}")
    expect(row.get_by_test_id("state")).to_have_text("failed")
    expect(row).to_contain_text("cancelled by ops")
    expect(page.get_by_test_id(f"cancel-{job.id}")).to_have_count(0)
    snap(page, shots, "jobs")


# --- who may do what ------------------------------------------------------------------------


def test_a_viewer_sees_the_pages_without_action_buttons_and_every_action_is_403(
    browser_pages: Browser, server: ConsoleProcess
) -> None:
    page = browser_pages.page(server.tokens.viewer)
    expect(page.get_by_test_id("principal")).to_have_text("viewer")
    for path in [f"/models/{m}/{p}" for m in (TINY_MODEL, IMAGE_MODEL) for p in MODEL_PAGES]:
        assert page.goto(path).status == 200, path
        # The only form left is the header's logout; no link leads to a confirmation.
        expect(page.locator("main form, main button")).to_have_count(0)
        expect(page.locator("main a[href*='/rollback'], main a[href*='/purge']")).to_have_count(0)
    page.goto(f"/models/{TINY_MODEL}/labeling")
    expect(page.get_by_test_id("no-label-scope")).to_be_visible()
    token = csrf(page)
    for path, fields in actions():
        answer = post(page, path, {**fields, "csrf_token": token}, Origin=server.url)
        assert answer.status == 403, path
        assert "token 'viewer' (scopes: infer) lacks the scope" in unescape(answer.text()), path


def test_forged_posts_are_refused_without_csrf_token_from_another_origin_or_without_session(
    browser_pages: Browser, server: ConsoleProcess
) -> None:
    serving = server.serving_version()
    target = str(2 if serving == 1 else 1)
    page = browser_pages.page(server.tokens.admin)
    rollback = f"/models/{TINY_MODEL}/rollback"
    token = csrf(page)
    no_token = post(page, rollback, {"version": target}, Origin=server.url)
    assert no_token.status == 403 and "csrf_token is missing or wrong" in no_token.text()
    other_port = server.url.rsplit(":", 1)[0] + ":1"
    foreign = post(page, rollback, {"version": target, "csrf_token": token}, Origin=other_port)
    assert foreign.status == 403 and "own origin" in foreign.text()
    stranger = browser_pages.page()  # another cookie jar: no session
    bare = post(stranger, rollback, {"version": target, "csrf_token": token}, Origin=server.url)
    assert bare.status == 401 and "no console session" in bare.text()

    # A page of another port of the same host is same-site: the browser sends the session's
    # SameSite=Strict cookie with its form, and the Origin check alone refuses it.
    attack = f"{other_port}/attack.html"
    form = (
        f'<form method="post" action="{server.url}{rollback}"><input name="version" value="{target}">'
        f'<input name="csrf_token" value="{token}"><button id="go">go</button></form>'
    )
    page.route(attack, lambda route: route.fulfill(body=form, content_type="text/html"))
    page.goto(attack)
    with page.expect_navigation():
        page.click("#go")
    assert page.url == f"{server.url}{rollback}"
    expect(page.locator("body")).to_contain_text("must be sent from the console's own origin")
    assert server.serving_version() == serving


# --- accessibility --------------------------------------------------------------------------


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations of serious or critical impact on the page as it is."""
    page.wait_for_load_state("networkidle")
    results: dict[str, Any] = page.evaluate(
        "async () => await axe.run(document, {resultTypes: ['violations']})"
    )
    assert len(results["passes"]) > 20, "axe-core checked next to nothing"  # it did run
    found: list[dict[str, Any]] = results["violations"]
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"]],
        }
        for v in found
        if v["impact"] in ("serious", "critical")
    ]


def test_axe_finds_no_serious_or_critical_violation_on_the_main_pages(
    browser_pages: Browser, server: ConsoleProcess, shots: Path
) -> None:
    server.infer_texts({"axe-0": "where is my order", "axe-1": "hello team thanks"})
    page = browser_pages.page(server.tokens.admin)
    # Injected before the page's own scripts, outside its Content-Security-Policy.
    page.context.add_init_script(path=AXE)
    paths = [
        "/",
        *(f"/models/{TINY_MODEL}/{p}" for p in MODEL_PAGES),
        f"/models/{IMAGE_MODEL}/labeling",
    ]
    found = {}
    for path in paths:
        page.goto(path)
        if path.endswith("/drift"):
            expect(page.locator("#drift-charts .uplot").first).to_be_visible()
            snap(page, shots, "drift")
        found[path] = axe_violations(page)
    other = 2 if server.serving_version() == 1 else 1
    page.goto(f"/models/{TINY_MODEL}/rollback?version={other}")
    found["rollback confirmation"] = axe_violations(page)
    page.click("#logout")
    page.wait_for_url("**/login")
    found["/login"] = axe_violations(page)
    assert {p: v for p, v in found.items() if v} == {}


def test_keyboard_only_login_navigation_and_logout(
    browser_pages: Browser, server: ConsoleProcess
) -> None:
    page = browser_pages.page()
    page.goto("/login")
    page.keyboard.type(server.tokens.labeler)  # the token field has the focus
    page.keyboard.press("Enter")
    page.wait_for_url("**/")
    tab_to(page, f"a[href='/models/{TINY_MODEL}/labeling']")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/models/{TINY_MODEL}/labeling")
    tab_to(page, "#nav-drift")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/models/{TINY_MODEL}/drift")
    tab_to(page, "#logout")
    page.keyboard.press("Enter")
    page.wait_for_url("**/login")


def tab_to(page: Page, selector: str, most: int = 60) -> None:
    """Press Tab until ``selector`` has the focus: reachable by keyboard, in a bounded number
    of steps."""
    for _ in range(most):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} not reached by {most} presses of Tab")
