"""Jinja2 templates of the console (autoescaped) and the filters they use."""

from __future__ import annotations

import math
import time
from importlib import resources
from typing import Any

from jinja2 import DictLoader, Environment, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from service.console._sessions import Session


def environment() -> Environment:
    env = Environment(
        # Read once, here: rendering (on the event loop) never touches the file system.
        loader=DictLoader(_templates()),
        autoescape=select_autoescape(default=True, default_for_string=True),
        enable_async=False,
    )
    env.filters["pct"] = _pct
    env.filters["num"] = _num
    env.filters["ms"] = _ms
    env.filters["when"] = _when
    env.filters["seconds"] = _seconds
    env.filters["age"] = _age
    return env


def _templates() -> dict[str, str]:
    folder = resources.files("service.console") / "templates"
    return {
        item.name: item.read_text(encoding="utf-8")
        for item in folder.iterdir()
        if item.name.endswith(".html")
    }


class Renderer:
    def __init__(self, env: Environment) -> None:
        self.env = env

    def page(
        self,
        request: Request,
        template: str,
        session: Session | None,
        status_code: int = 200,
        **values: Any,
    ) -> HTMLResponse:
        notices = list(session.notices) if session is not None else []
        if session is not None:
            session.notices.clear()
        html = self.env.get_template(template).render(
            session=session, notices=notices, path=request.url.path, **values
        )
        return HTMLResponse(html, status_code=status_code)


def _pct(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value * 100:.1f} %"


def _num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def _ms(value: float) -> str:
    return "—" if not math.isfinite(value) else f"{value:.1f} ms"


def _when(value: float | None) -> str:
    if value is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(value))


def _age(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "unknown"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _seconds(value: float) -> str:
    return "—" if not math.isfinite(value) or value <= 0 else f"{value:.1f} s"
