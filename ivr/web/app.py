"""The aiohttp Application: shared state in typed AppKeys, security headers on every answer,
errors as small HTML pages (never a traceback), /favicon.ico, /static/, and one `setup(app)`
per page module (admin today; the visual caller page and the agent desk later)."""

from __future__ import annotations

import logging
import weakref
from pathlib import Path
from typing import Callable, Iterable

from aiohttp import web

from ivr.config import Config
from ivr.web import pages
from ivr.web.security import AdminAuth

_LOGGER = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"

CONFIG_KEY = web.AppKey("config", Config)
STORE_PATH_KEY = web.AppKey("store_path", Path)
AUTH_KEY = web.AppKey("admin_auth", AdminAuth)
# every open websocket (the visual page, later): closed in on_shutdown so a stop never hangs
SOCKETS_KEY = web.AppKey("websockets", weakref.WeakSet)

CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
MAX_BODY = 64 * 1024  # forms are tiny

PageSetup = Callable[[web.Application], None]


def build_web_app(config: Config, store_path: Path, *, admin_password: str,
                  pages_setup: Iterable[PageSetup] | None = None) -> web.Application:
    """The web app over the call store at `store_path`. `pages_setup`: the page modules'
    `setup(app)` functions (default: the admin page); each adds its routes and AppKeys."""
    app = web.Application(middlewares=[security_headers, error_pages], client_max_size=MAX_BODY)
    app[CONFIG_KEY] = config
    app[STORE_PATH_KEY] = Path(store_path)
    web_cfg = config.web
    app[AUTH_KEY] = AdminAuth(admin_password, session_seconds=web_cfg.session_minutes * 60.0,
                              max_failures=web_cfg.login_attempts, window=float(web_cfg.login_window))
    app[SOCKETS_KEY] = weakref.WeakSet()
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_get("/static/charts.css", charts_css)
    app.router.add_static("/static/", STATIC, show_index=False, follow_symlinks=False)
    app.router.add_get("/", home)
    if pages_setup is None:
        from ivr.web import admin

        pages_setup = [admin.setup]
    for setup in pages_setup:
        setup(app)
    app.on_shutdown.append(close_websockets)
    return app


@web.middleware
async def security_headers(request: web.Request, handler):
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # redirects and errors raised, not returned
        _apply_headers(exc)
        raise
    _apply_headers(response)
    return response


def _apply_headers(response: web.StreamResponse) -> None:
    if response.prepared:
        return
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value


@web.middleware
async def error_pages(request: web.Request, handler):
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_page(exc.status, exc.reason, _MESSAGES.get(exc.status, exc.reason),
                          code=f"http-{exc.status}", headers=exc.headers)
    except Exception:
        _LOGGER.exception("web: %s %s failed", request.method, request.path)
        return error_page(500, "Something went wrong",
                          "The page could not be shown. The error is in the controller's log.",
                          code="internal-error")


_MESSAGES = {
    400: "The request was not understood.",
    403: "This is not allowed.",
    404: "There is no page here.",
    405: "This page does not take that method.",
    413: "The request is too large.",
    429: "Too many tries. Wait a little and try again.",
}


def error_page(status: int, heading: str, message: str, *, code: str, headers=None) -> web.Response:
    body = pages.render("error.html", heading=heading, message=message, code=code)
    response = pages.page(heading, body, status=status)
    for name in ("Retry-After", "Allow"):
        if headers and name in headers:
            response.headers[name] = headers[name]
    return response


async def favicon(request: web.Request) -> web.Response:
    return web.Response(body=(STATIC / "favicon.svg").read_bytes(), content_type="image/svg+xml")


async def charts_css(request: web.Request) -> web.Response:
    from ivr.web.charts import chart_css

    return web.Response(text=chart_css(), content_type="text/css", charset="utf-8")


async def home(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/admin")


async def close_websockets(app: web.Application) -> None:
    for ws in list(app[SOCKETS_KEY]):
        await ws.close(code=1001, message=b"server shutdown")
