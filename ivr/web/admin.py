"""The admin page: the figures of `ivr stats` as charts (inline SVG), each with its table.

Routes: GET /admin (sign-in required; `?since=` filters), GET/POST /admin/login,
POST /admin/logout.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from aiohttp import web

from ivr.errors import IvrError
from ivr.store.stats import compute, empty
from ivr.store.stats_text import pct, secs
from ivr.web import charts, pages
from ivr.web.app import AUTH_KEY, CONFIG_KEY, STORE_PATH_KEY, error_page
from ivr.web.pages import Markup, esc
from ivr.web.security import LOGIN_COOKIE, SESSION_COOKIE, client_ip, same_origin, set_cookie

_LOGGER = logging.getLogger(__name__)

TOP_STEPS = 10


def setup(app: web.Application) -> None:
    app.router.add_get("/admin", dashboard)
    app.router.add_get("/admin/login", login_form)
    app.router.add_post("/admin/login", login)
    app.router.add_post("/admin/logout", logout)


def _session(request: web.Request):
    return request.app[AUTH_KEY].session(request.cookies.get(SESSION_COOKIE))


# ---- sign-in ---------------------------------------------------------------------------

def _login_page(request: web.Request, *, error: str = "", status: int = 200) -> web.Response:
    auth = request.app[AUTH_KEY]
    nonce = secrets.token_urlsafe(24)
    notice = Markup(f'<p class="error" role="alert">{esc(error)}</p>') if error else ""
    secrets_file = request.app[CONFIG_KEY].var_dir / "secrets.json"
    body = pages.render("login.html", csrf=auth.login_csrf(nonce), error=notice, secrets=secrets_file)
    response = pages.page("Admin sign-in", body, status=status)
    set_cookie(response, request, LOGIN_COOKIE, nonce, max_age=3600)
    return response


async def login_form(request: web.Request) -> web.Response:
    if _session(request) is not None:
        raise web.HTTPSeeOther("/admin")
    return _login_page(request)


async def login(request: web.Request) -> web.Response:
    auth = request.app[AUTH_KEY]
    ip = client_ip(request)
    wait = auth.retry_after(ip)
    if wait:
        response = _login_page(request, status=429,
                               error=f"Too many failed sign-ins from your address. Try again in {wait} s.")
        response.headers["Retry-After"] = str(wait)
        return response
    form = await request.post()
    if not same_origin(request) or not auth.check_login_csrf(request.cookies.get(LOGIN_COOKIE),
                                                             _field(form, "csrf")):
        return _login_page(request, status=403,
                           error="The form had expired or did not come from this page. Try again.")
    if not auth.check_password(ip, _field(form, "password")):
        return _login_page(request, status=401, error="Wrong password.")
    auth.close_session(request.cookies.get(SESSION_COOKIE))  # a new token at every sign-in
    token = auth.open_session()
    response = _redirect("/admin")
    set_cookie(response, request, SESSION_COOKIE, token)
    response.del_cookie(LOGIN_COOKIE, path="/")
    return response


async def logout(request: web.Request) -> web.Response:
    session = _session(request)
    form = await request.post()
    if session is None:
        raise web.HTTPSeeOther("/admin/login")
    if not same_origin(request) or not secrets.compare_digest(session.csrf, _field(form, "csrf")):
        return error_page(403, "Not signed out", "The form did not come from this page.",
                          code="csrf-invalid")
    request.app[AUTH_KEY].close_session(request.cookies.get(SESSION_COOKIE))
    response = _redirect("/admin/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _field(form, name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


# ---- the page ----------------------------------------------------------------------------

async def dashboard(request: web.Request) -> web.Response:
    session = _session(request)
    if session is None:
        raise web.HTTPSeeOther("/admin/login")
    config = request.app[CONFIG_KEY]
    since = request.query.get("since", "").strip()
    notice = ""
    try:
        stats = await asyncio.to_thread(compute, request.app[STORE_PATH_KEY], since=since or None,
                                        tz=config.calendar.timezone)
    except FileNotFoundError:
        stats = None
        notice = "No call store yet: there are no calls to show."
    except IvrError as exc:
        stats = None
        notice = f"{exc.message} ({exc.code})"
    nav = pages.render("nav.html", csrf=session.csrf)
    if stats is None:
        stats = empty(None, config.calendar.timezone)
    body = pages.render(
        "admin.html", since=since,
        notice=Markup(f'<p class="error" role="alert">{esc(notice)}</p>') if notice else "",
        calls=stats["calls"], containment=pct(stats["containment"]),
        resolved_rate=pct(stats["resolved_rate"]), aht=secs(stats["average_handle_time"]),
        acceptance=pct(stats["proactive"]["acceptance_rate"]),
        precision=pct(stats["proactive"]["precision"]), timezone=stats["timezone"],
        abandon=f"{stats['abandon_seconds']:g}", charts=_charts_or_nothing(stats))
    return pages.page("Call analytics", body, nav=nav)


def _charts_or_nothing(s: dict[str, Any]) -> Markup:
    if not s["calls"]:
        return Markup('<section class="card" id="no-calls"><p>No calls in this window.</p></section>')
    return Markup("\n".join(_charts(s)))


def _charts(s: dict[str, Any]) -> list[str]:
    p = s["proactive"]
    served = s["ended"] - s["abandoned"]
    sections = [
        ("containment", "Containment", charts.containment(s), _table(
            ["", "calls", "share of calls served"],
            [["resolved by the IVR", s["resolved"], pct(s["resolved_rate"])],
             ["contained (not transferred)", s["contained"], pct(s["containment"])],
             ["transferred to a human", s["transferred"], pct(_share(s["transferred"], served))],
             [f"abandoned (< {s['abandon_seconds']:g} s, not counted)", s["abandoned"], ""],
             ["in progress (not counted)", s["in_progress"], ""]])),
        ("transfers", "Transfer reasons", charts.transfer_reasons(s), _table(
            ["reason", "calls", "share"],
            [[r["reason"], r["count"], pct(r["share"])] for r in s["transfer_reasons"]]
            + [[f"queue: {r['queue']}", r["count"], pct(r["share"])] for r in s["transfer_queues"]])),
        ("handle-time", "Average handle time", charts.handle_time(s), _table(
            ["outcome", "calls", "mean seconds in the IVR"],
            [[o, s["outcomes"].get(o, 0), secs(t)] for o, t in s["handle_time_by_outcome"].items()]
            + [["all ended calls", s["ended"], secs(s["average_handle_time"])]])),
        ("steps", f"No-input and no-match per step (top {TOP_STEPS})", charts.steps(s, TOP_STEPS), _table(
            ["step", "entered", "no-input", "rate", "no-match", "rate"],
            [[f"{r['scene']}.{r['step']}", "-" if r["entered"] is None else r["entered"],
              r["no_input"], pct(r["no_input_rate"]), r["no_match"], pct(r["no_match_rate"])]
             for r in s["steps"] if r["no_input"] or r["no_match"]][:TOP_STEPS])),
        ("funnels", "Scene funnels", charts.funnels(s), _table(
            ["scene", "entered", "resolved", "transferred", "escalated from", "dropped", "passed on"],
            [[f["scene"], f["entered"], f["resolved"], f["transferred"], f["escalated"], f["dropped"],
              f["passed_on"]] for f in s["funnels"]])),
        ("proactive", "Proactive questions", charts.proactive(s), _table(
            ["prediction", "asked", "accepted", "declined", "unanswered", "acceptance", "precision"],
            [[d["prediction"], d["asked"], d["accepted"], d["declined"], d["unanswered"],
              pct(d["acceptance_rate"]), pct(d["precision"])]
             for d in ([{"prediction": "all", **p}] if p["asked"] else []) + p["by_prediction"]])),
        ("per-day", "Calls per day", charts.per_day(s), _table(
            ["day", "calls"], [[d["day"], d["calls"]] for d in s["calls_per_day"]])),
        ("per-hour", "Calls per hour", charts.per_hour(s), _table(
            ["hour", "calls"], [[f"{h['hour']:02d}:00", h["calls"]] for h in s["calls_per_hour"]])),
    ]
    return [pages.render("chart.html", name=name, heading=heading, svg=Markup(svg), table=table)
            for name, heading, svg, table in sections]


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _table(head: list[str], rows: list[list[Any]]) -> Markup:
    if not rows:
        return Markup('<p class="muted">No data.</p>')
    th = "".join(f'<th scope="col">{esc(h)}</th>' for h in head)
    body = "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in row) + "</tr>" for row in rows)
    return Markup(f'<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>')
