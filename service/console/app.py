"""The console's routes: a Starlette app over the core services (see ``pages``).

Pages need a session; without one they answer 303 to ``/login``. With tokens configured a
session starts by posting a valid token to ``/login``; without tokens (loopback only, as gRPC)
the first page opens an ``anonymous`` session with every scope, as gRPC treats such calls.
Actions are POST forms: same origin (``_guard``), a session, the session's ``csrf_token`` and
the gRPC scope of the same action; then the core is called with the session's principal as
``caller=``, so labels are stored under the token's name.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from service.console import pages
from service.console._guard import ConsoleGuard
from service.console._images import image_response
from service.console._plot import accuracy_svg
from service.console._render import Renderer, environment
from service.console._sessions import COOKIE, Session, Sessions
from service.domain.loop import MAX_CONTENT_BYTES_PER_CALL, NewSample
from service.errors import (
    AlreadyEnded,
    Conflict,
    InvalidInput,
    LoopserveError,
    NotFound,
    Overloaded,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from service.security import ANONYMOUS, IMPLIED, Principal, Scope, TokenStore

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
MAX_FORM_BYTES = 64 * 1024  # a form is ids, labels and a token: never large
STATUS = {
    InvalidInput: 400,
    Unauthenticated: 401,
    PermissionDenied: 403,
    NotFound: 404,
    Conflict: 409,
    AlreadyEnded: 409,
    Overloaded: 429,
    Unavailable: 503,
}
Handler = Callable[[Request, Session], Awaitable[Response]]


@dataclass(frozen=True)
class Console:
    core: pages.Core
    tokens: TokenStore | None
    sessions: Sessions
    tls: bool
    render: Renderer

    def session(self, request: Request) -> Session | None:
        """The request's session, if it has a live one whose token is still configured."""
        session = self.sessions.get(request.cookies.get(COOKIE))
        revoked = (
            self.tokens is not None
            and session is not None
            and (session.principal.name not in self.tokens.names)
        )
        if revoked and session is not None:  # its token left the tokens file since login
            self.sessions.end(session.id)
            return None
        return session

    def login(self, principal: Principal, response: Response) -> Session:
        session = self.sessions.create(principal)
        response.set_cookie(
            COOKIE, session.id, max_age=int(self.sessions.ttl_s), path="/", secure=self.tls,
            httponly=True, samesite="strict",
        )  # fmt: skip
        return session


def console_app(
    core: pages.Core,
    tokens: TokenStore | None,
    sessions: Sessions | None = None,
    tls: bool = False,
    hosts: frozenset[str] | None = None,
) -> ConsoleGuard:
    """The console as an ASGI app, behind its guard (headers, same-origin writes, and with
    ``hosts`` the host names requests may name)."""
    console = Console(core, tokens, sessions or Sessions(), tls, Renderer(environment()))
    routes = [
        Route("/login", _login_form(console), methods=["GET"]),
        Route("/login", _login(console), methods=["POST"]),
        Route("/logout", _action(console, None, _logout(console)), methods=["POST"]),
        *_page_routes(console),
        *_action_routes(console),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={LoopserveError: _error(console)})
    return ConsoleGuard(app, tls, hosts)


def _page_routes(console: Console) -> list[Route]:
    model = "/models/{model}"
    found: list[tuple[str, Handler]] = [
        ("/", _overview(console)),
        ("/fragments/overview", _overview(console, fragment=True)),
        (f"{model}/labeling", _model_page(console, pages.labeling, "labeling.html")),
        (f"{model}/versions", _versions(console)),
        (f"{model}/drift", _drift(console)),
        (f"{model}/sources", _model_page(console, pages.sources, "sources.html")),
        (f"{model}/jobs", _model_page(console, pages.jobs, "jobs.html")),
        (f"{model}/candidates/{{prediction_id:path}}/image", _image(console)),
        (f"{model}/rollback", _rollback_form(console)),  # the confirmation
        (f"{model}/sources/{{source}}/purge", _purge_form(console)),  # the confirmation
    ]
    return [Route(p, _page(console, h), methods=["GET"]) for p, h in found]


def _action_routes(console: Console) -> list[Route]:
    label, admin = Scope.LABEL, Scope.ADMIN
    actions: list[tuple[str, Scope, Handler]] = [
        ("/models/{model}/labels", label, _labels(console)),
        ("/models/{model}/labels/{sample_id}/delete", label, _undo(console)),
        ("/models/{model}/rollback", admin, _rollback(console)),
        ("/models/{model}/versions/{version:int}/approve", admin, _decide(console, True)),
        ("/models/{model}/versions/{version:int}/reject", admin, _decide(console, False)),
        ("/models/{model}/sources/{source}/purge", admin, _purge(console)),
        ("/models/{model}/jobs/{job_id}/cancel", admin, _cancel(console)),
    ]
    return [Route(p, _action(console, s, h), methods=["POST"]) for p, s, h in actions]


# --- sessions, pages and actions ----------------------------------------------------------


def _page(console: Console, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A GET page: 303 to /login without a session (an anonymous one without tokens)."""

    async def endpoint(request: Request) -> Response:
        session = console.session(request)
        fresh: Response | None = None
        if session is None:
            if console.tokens is not None and "hx-request" in request.headers:
                # An htmx poll follows a 303 itself and would show the login form inside the
                # page: htmx sends the whole page there instead.
                return Response(status_code=204, headers={"HX-Redirect": "/login"})
            if console.tokens is not None:
                return RedirectResponse("/login", status_code=303)
            fresh = Response()
            session = console.login(Principal(ANONYMOUS, IMPLIED[Scope.ADMIN]), fresh)
        response = await handler(request, session)
        if fresh is not None:
            response.raw_headers += [h for h in fresh.raw_headers if h[0] == b"set-cookie"]
        return response

    return endpoint


def _action(
    console: Console, scope: Scope | None, handler: Handler
) -> Callable[[Request], Awaitable[Response]]:
    """A POST form: a session, its CSRF token, then the scope of the action."""

    async def endpoint(request: Request) -> Response:
        session = console.session(request)
        if session is None:
            return _refused(console, request, 401, "log in first: no console session")
        form = await _form(request)
        if not session.csrf_matches(str(form.get("csrf_token", ""))):
            return _refused(
                console, request, 403, "refused: the form's csrf_token is missing or wrong"
            )
        session.principal.require(scope, "this console action")  # PermissionDenied: 403
        request.state.form = form
        return await handler(request, session)

    return endpoint


async def _form(request: Request) -> FormData:
    declared = request.headers.get("content-length")
    if declared is None or not declared.isdigit() or int(declared) > MAX_FORM_BYTES:
        raise InvalidInput(
            f"a console form is sent with a Content-Length of at most {MAX_FORM_BYTES} bytes"
        )
    return await request.form(max_files=0, max_fields=2000)


def _refused(console: Console, request: Request, status: int, message: str) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": message}, status_code=status)
    return console.render.page(request, "error.html", None, status, message=message)


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _error(console: Console) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handle(request: Request, exc: Exception) -> Response:
        status = next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 500)
        message = str(exc) if status != 500 else "internal error; details are in the server log"
        if status == 500:
            log.error("console: %s %s failed", request.method, request.url.path, exc_info=exc)
        return _refused(console, request, status, message)

    return handle


def _back(session: Session, where: str, notice: str) -> Response:
    session.notices.append(notice)
    return RedirectResponse(where, status_code=303)


def _field(request: Request, name: str) -> str:
    form: FormData = request.state.form
    value = form.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"the form needs the field {name!r}")
    return value


# --- login ----------------------------------------------------------------------------------


def _login_form(console: Console) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        if console.tokens is None:  # nothing to log in with: loopback, anonymous
            return RedirectResponse("/", status_code=303)
        return console.render.page(request, "login.html", None)

    return endpoint


def _login(console: Console) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        if console.tokens is None:
            return RedirectResponse("/", status_code=303)
        token = str((await _form(request)).get("token", "")).strip()
        try:
            principal = console.tokens.authenticate(token)
        except Unauthenticated:
            log.info("console: a login with an unknown token")
            return console.render.page(
                request, "login.html", None, 401, error="that token is not valid on this server"
            )
        response = RedirectResponse("/", status_code=303)
        console.login(principal, response)
        log.info("console: %s logged in", principal.name)
        return response

    return endpoint


def _logout(console: Console) -> Handler:
    async def handler(request: Request, session: Session) -> Response:
        console.sessions.end(session.id)
        response = RedirectResponse("/login" if console.tokens else "/", status_code=303)
        response.delete_cookie(
            COOKIE, path="/", secure=console.tls, httponly=True, samesite="strict"
        )
        return response

    return handler


# --- pages ----------------------------------------------------------------------------------


def _overview(console: Console, fragment: bool = False) -> Handler:
    async def handler(request: Request, session: Session) -> Response:
        models = await pages.overview(console.core)
        template = "overview_fragment.html" if fragment else "overview.html"
        return console.render.page(request, template, session, models=models)

    return handler


def _model_page(
    console: Console,
    data: Callable[[pages.Core, str, Principal], Awaitable[Any]],
    template: str,
) -> Handler:
    """A page of one model whose data function takes the principal (which actions to offer)."""

    async def handler(request: Request, session: Session) -> Response:
        model = request.path_params["model"]
        page = await data(console.core, model, session.principal)
        return console.render.page(request, template, session, page=page, model=model)

    return handler


def _versions(console: Console) -> Handler:
    async def handler(request: Request, session: Session) -> Response:
        page = await pages.versions(console.core, request.path_params["model"], session.principal)
        ordered = sorted(page.rows, key=lambda r: r.summary.version)
        plot = accuracy_svg(
            [r.summary.version for r in ordered],
            {
                "holdout": [r.holdout for r in ordered],
                "live": [r.live for r in ordered],
                "estimated": [r.estimated for r in ordered],
            },
        )
        return console.render.page(
            request, "versions.html", session, page=page, model=page.model, plot=plot
        )

    return handler


def _drift(console: Console) -> Handler:
    async def handler(request: Request, session: Session) -> Response:
        page = await pages.drift(console.core, request.path_params["model"])
        data = json.dumps({"detectors": page.series, "accuracy": page.accuracy_series})
        return console.render.page(
            request, "drift.html", session, page=page, model=page.model, data=data
        )

    return handler


def _image(console: Console) -> Handler:
    async def handler(request: Request, session: Session) -> Response:
        session.principal.require(Scope.LABEL, "labeling candidates")  # as GetLabelingCandidates
        model, prediction_id = request.path_params["model"], request.path_params["prediction_id"]
        found = await pages.candidate(console.core, model, prediction_id)
        if found is None or not found.content:
            raise NotFound(f"no image candidate {prediction_id!r} of {model!r} in the queue")
        return image_response(found.content)

    return handler


def _rollback_form(console: Console) -> Handler:
    async def handler(request: Request, session: Session) -> Response:
        model = request.path_params["model"]
        version = _int(request.query_params.get("version", ""), "version")
        preview = await pages.rollback_preview(console.core, model, version, session.principal)
        if preview is None:
            raise NotFound(f"model {model!r} has no version {version}")
        return console.render.page(request, "rollback.html", session, preview=preview, model=model)

    return handler


def _purge_form(console: Console) -> Handler:
    async def handler(request: Request, session: Session) -> Response:
        model, name = request.path_params["model"], request.path_params["source"]
        row = await pages.source(console.core, model, name)
        if row is None:
            raise NotFound(f"model {model!r} has no samples of source {name!r}")
        return console.render.page(request, "purge.html", session, row=row, model=model)

    return handler


def _int(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise InvalidInput(f"{name} must be a whole number, got {value[:40]!r}") from None


# --- actions --------------------------------------------------------------------------------


def _labels(console: Console) -> Handler:
    """One label (``prediction_id`` and ``label``), or every suggestion at or above
    ``min_confidence`` (bulk accept); through AddSamples' core path."""

    async def handler(request: Request, session: Session) -> Response:
        model = request.path_params["model"]
        form: FormData = request.state.form
        queued = await console.core.adaptation.labeling_candidates(model, 1000)
        if form.get("min_confidence"):
            floor = _float(str(form["min_confidence"]))
            chosen = [(c, c.predicted_label) for c in queued if c.confidence >= floor]
        else:
            pid, label = _field(request, "prediction_id"), _field(request, "label")
            found = next((c for c in queued if c.prediction_id == pid), None)
            if found is None:
                raise NotFound(f"candidate {pid!r} of {model!r} is no longer in the queue")
            chosen = [(found, label)]
        samples = _samples(chosen)
        caller = session.principal.name
        outcome = (
            await console.core.adaptation.add_samples(model, samples, caller=caller)
            if samples
            else None
        )
        ids = outcome.ids if outcome is not None else []
        if _wants_json(request):
            return JSONResponse({"ids": ids, "accepted": outcome.accepted if outcome else 0})
        return _back(session, f"/models/{model}/labeling", f"{len(ids)} labels stored")

    return handler


def _samples(chosen: list[tuple[Any, str]]) -> list[NewSample]:
    samples, size = [], 0
    for candidate, label in chosen:
        size += len(candidate.content)
        if size > MAX_CONTENT_BYTES_PER_CALL:  # what one AddSamples call carries
            break
        samples.append(
            NewSample(
                candidate.text, label, prediction_id=candidate.prediction_id, data=candidate.content
            )
        )
    return samples


def _float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise InvalidInput(
            f"min_confidence must be a number in [0, 1], got {value[:40]!r}"
        ) from None
    if not 0.0 <= number <= 1.0:
        raise InvalidInput(f"min_confidence must be in [0, 1], got {number}")
    return number


def _undo(console: Console) -> Handler:
    async def handler(request: Request, session: Session) -> Response:
        model, sample_id = request.path_params["model"], request.path_params["sample_id"]
        await console.core.adaptation.delete_sample(model, sample_id, caller=session.principal.name)
        if _wants_json(request):
            return JSONResponse({"deleted": sample_id})
        return _back(session, f"/models/{model}/labeling", f"label {sample_id} undone")

    return handler


def _rollback(console: Console) -> Handler:
    async def handler(request: Request, session: Session) -> Response:
        model = request.path_params["model"]
        version = _int(_field(request, "version"), "version")
        await console.core.adaptation.rollback(model, version)
        log.warning(
            "console: %s rolled %s back to version %d", session.principal.name, model, version
        )
        return _back(session, f"/models/{model}/versions", f"version {version} serves now")

    return handler


def _decide(console: Console, approve: bool) -> Handler:
    async def handler(request: Request, session: Session) -> Response:
        model, version = request.path_params["model"], request.path_params["version"]
        caller = session.principal.name
        if approve:
            await console.core.adaptation.approve_version(model, version, caller=caller)
        else:
            await console.core.adaptation.reject_version(model, version, caller=caller)
        verdict = "approved: it serves now" if approve else "rejected"
        return _back(session, f"/models/{model}/versions", f"version {version} {verdict}")

    return handler


def _purge(console: Console) -> Handler:
    async def handler(request: Request, session: Session) -> Response:
        model, name = request.path_params["model"], request.path_params["source"]
        outcome = await console.core.adaptation.purge_samples(model, name, None)
        return console.render.page(request, "purged.html", session, outcome=outcome, model=model)

    return handler


def _cancel(console: Console) -> Handler:
    async def handler(request: Request, session: Session) -> Response:
        model, job_id = request.path_params["model"], request.path_params["job_id"]
        job = await console.core.adaptation.cancel_job(model, job_id, caller=session.principal.name)
        notice = (
            f"job {job_id}: cancel requested; the process that runs it ends it at its next poll"
            if job.cancel_requested  # another process (the trainer) runs it
            else f"job {job_id} cancelled"
        )
        return _back(session, f"/models/{model}/jobs", notice)

    return handler
