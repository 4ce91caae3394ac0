"""The caller's visual page: opened from the SMS link, live while the call goes on.

GET /v/{token}   a Continue page (link previewers fetch URLs: a GET spends nothing)
POST /v/{token}  spends the token (once), opens a visit (HttpOnly SameSite=Strict cookie) and
                 redirects to /v, a URL without the token
GET /v           the page: transcript, the current step's buttons, a keypad with delete, the
                 verification form, and the caller's policies, cards and claims once verified
GET /v/ws        the live feed (ivr.web.visual_feed), Origin-checked
POST /v/tap, /v/keys, /v/verify   the same actions as forms (CSRF token), for pages without
                 JavaScript and as the verification path (any method of ivr.verification)
POST /v/code     text a one-time code to the number on file (at most 3 per call)

Every object shown is the visit's own call's customer: nothing on the page takes an id from
the browser.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
from typing import Any

from aiohttp import web

from ivr.live import LiveCalls
from ivr.privacy import mask_phone
from ivr.store.links import LinkRejected, LinkTokens
from ivr.verification import Claimant, CodeRefused, Methods, page_methods
from ivr.web import pages
from ivr.web.app import CONFIG_KEY, SOCKETS_KEY
from ivr.web.pages import Markup, esc
from ivr.web.security import client_ip, same_origin
from ivr.web.sessions import AttemptLimit
from ivr.web.visits import Visits
from ivr.web.visual_feed import follow, origin_allowed
from ivr.web.visual_text import TEXT, holdings_html, t
from ivr.web.visual_verify import verify_section

_LOGGER = logging.getLogger(__name__)

LIVE_KEY = web.AppKey("live_calls", LiveCalls)
LINKS_KEY = web.AppKey("link_tokens", LinkTokens)
VISITS_KEY = web.AppKey("visits", Visits)
METHODS_KEY = web.AppKey("verify_methods", Methods)
LIMITS_KEY = web.AppKey("verify_limits", dict)
VISIT_COOKIE = "ivr_visit"
NONCE_COOKIE = "ivr_link"
_KEY = secrets.token_bytes(32)  # per process: a restart invalidates open Continue forms


def setup_for(live: LiveCalls, links: LinkTokens, methods, visits: Visits | None = None, *,
              per_number: int = 5, per_ip: int = 20, window: float = 900.0):
    """The page's `setup(app)`, over the process's live calls, link tokens and verification
    methods (ivr.verification.Methods; a bare Verifier offers the knowledge factors only)."""
    if not isinstance(methods, Methods):
        methods = page_methods(methods)

    def setup(app: web.Application) -> None:
        app[LIVE_KEY] = live
        app[LINKS_KEY] = links
        app[VISITS_KEY] = visits if visits is not None else Visits()
        app[METHODS_KEY] = methods
        app[LIMITS_KEY] = {"number": AttemptLimit(per_number, window), "ip": AttemptLimit(per_ip, window)}
        app.router.add_get("/v", show)
        app.router.add_get("/v/ws", feed)
        app.router.add_post("/v/tap", tap)
        app.router.add_post("/v/keys", keys)
        app.router.add_post("/v/verify", verify)
        app.router.add_post("/v/code", send_code)
        app.router.add_get("/v/{token}", continue_page)
        app.router.add_post("/v/{token}", spend)

    return setup


def _page(lang: str, title: str, body: Markup, *, status: int = 200) -> web.Response:
    text = pages.render("visual_base.html", lang=lang, title=title, body=body)
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _message(lang: str, key: str, *, status: int) -> web.Response:
    body = pages.render("visual_message.html", heading=t(lang, key + "_title"), message=t(lang, key))
    return _page(lang, t(lang, key + "_title"), body, status=status)


def _lang(request: web.Request) -> str:
    accept = request.headers.get("Accept-Language", "")
    return "zh" if accept.lower().startswith("zh") else "en"


# ---- the link: GET shows Continue, POST spends it -------------------------------------

async def continue_page(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    lang = _lang(request)
    try:
        await asyncio.to_thread(request.app[LINKS_KEY].check, token)
    except LinkRejected as exc:
        return _rejected(lang, exc.code)
    nonce = _nonce()
    body = pages.render("visual_continue.html", heading=t(lang, "continue_title"), text=t(lang, "continue_text"),
                        button=t(lang, "continue"), token=token, csrf=_csrf(nonce))
    response = _page(lang, t(lang, "continue_title"), body)
    response.set_cookie(NONCE_COOKIE, nonce, httponly=True, samesite="Strict", path="/v", max_age=900,
                        secure=request.secure)
    return response


async def spend(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    lang = _lang(request)
    form = await request.post()
    if not same_origin(request) or not _csrf_ok(request.cookies.get(NONCE_COOKIE), form.get("csrf")):
        return _message(lang, "csrf", status=403)
    try:
        grant = await asyncio.to_thread(request.app[LINKS_KEY].spend, token)
    except LinkRejected as exc:
        return _rejected(lang, exc.code)
    call = request.app[LIVE_KEY].get(grant.call_id)
    if call is None:
        return _message(lang, "ended", status=410)
    session = request.app[VISITS_KEY].open(grant.call_id, grant.phone, call.lang)
    response = web.HTTPSeeOther("/v")
    response.set_cookie(VISIT_COOKIE, session, httponly=True, samesite="Strict", path="/v",
                        secure=request.secure)
    response.del_cookie(NONCE_COOKIE, path="/v")
    raise response


def _rejected(lang: str, code: str) -> web.Response:
    key = {"link-expired": "expired", "link-spent": "spent", "link-call-ended": "ended"}.get(code, "unknown")
    return _message(lang, key, status=410 if key in ("expired", "spent", "ended") else 404)


def _nonce() -> str:
    return secrets.token_urlsafe(24)


def _csrf(nonce: str) -> str:
    """The Continue form's CSRF token: an HMAC of the nonce in its cookie (double submit)."""
    return hmac.new(_KEY, f"link:{nonce}".encode(), hashlib.sha256).hexdigest()


def _csrf_ok(nonce: str | None, token: Any) -> bool:
    return bool(nonce and token) and hmac.compare_digest(_csrf(nonce), str(token))


# ---- the page ---------------------------------------------------------------------------

def _visit(request: web.Request):
    visit = request.app[VISITS_KEY].get(request.cookies.get(VISIT_COOKIE))
    if visit is None:
        return None, None
    call = request.app[LIVE_KEY].get(visit.call_id)
    return visit, call


async def show(request: web.Request) -> web.Response:
    visit, call = _visit(request)
    lang = visit.lang if visit else _lang(request)
    if visit is None:
        return _message(lang, "no_visit", status=403)
    if call is None:
        request.app[VISITS_KEY].end_call(visit.call_id)
        return _message(lang, "ended", status=410)
    call.page_opened()
    verified = call.verified
    notice = request.query.get("notice", "")
    body = pages.render(
        "visual_page.html", heading=t(lang, "page_title"), csrf=visit.csrf,
        transcript_title=t(lang, "transcript"), choices_title=t(lang, "choices"),
        keypad_title=t(lang, "keypad"), delete=t(lang, "delete"), submit=t(lang, "submit"),
        verify_section=Markup("") if verified else verify_section(
            lang, visit.csrf, request.app[METHODS_KEY], Claimant(visit.call_id, call.profile)),
        holdings=holdings_html(lang, call.profile) if verified else Markup(""),
        notice=Markup(f'<p class="notice" role="status">{esc(t(lang, notice))}</p>') if notice in TEXT else "",
        status=t(lang, "connecting"), strings=_strings(lang))
    return _page(lang, t(lang, "page_title"), body)


def _strings(lang: str) -> str:
    keys = ("ivr", "you", "ended_hangup", "ended_transfer", "reconnecting", "live", "verified_now",
            "digits", "tapped", "refused")
    return json.dumps({k: t(lang, k) for k in keys}, ensure_ascii=False)


async def feed(request: web.Request) -> web.StreamResponse:
    visit, call = _visit(request)
    if visit is None or not origin_allowed(request, request.app[CONFIG_KEY].web.public_url):
        raise web.HTTPForbidden()
    if call is None:
        raise web.HTTPGone()
    try:
        since = max(0, int(request.query.get("since", "0")))
    except ValueError:
        since = 0
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=4096)
    await ws.prepare(request)
    request.app[SOCKETS_KEY].add(ws)
    call.page_opened()
    try:
        await follow(ws, call, visit, since)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        if not ws.closed:
            await ws.close()
    return ws


async def _acting(request: web.Request):
    """The visit and call of a form POST, after its Origin and CSRF checks."""
    visit, call = _visit(request)
    form = await request.post()
    if visit is None:
        return None, None, form, _message(_lang(request), "no_visit", status=403)
    if not same_origin(request) or form.get("csrf") != visit.csrf:
        return None, None, form, _message(visit.lang, "csrf", status=403)
    if call is None:
        return None, None, form, _message(visit.lang, "ended", status=410)
    return visit, call, form, None


async def tap(request: web.Request) -> web.Response:
    visit, call, form, refused = await _acting(request)
    if refused:
        return refused
    ok = call.tap(str(form.get("value", "")))
    raise web.HTTPSeeOther("/v?notice=" + ("tapped" if ok else "refused"))


async def keys(request: web.Request) -> web.Response:
    visit, call, form, refused = await _acting(request)
    if refused:
        return refused
    ok = call.enter_keys(str(form.get("value", "")))
    raise web.HTTPSeeOther("/v?notice=" + ("tapped" if ok else "refused"))


def _locked_out(request: web.Request, visit) -> web.Response | None:
    """429 with Retry-After while the visit's number or the address has failed too often."""
    limits = request.app[LIMITS_KEY]
    wait = max(limits["number"].retry_after(visit.phone), limits["ip"].retry_after(client_ip(request)))
    if not wait:
        return None
    _LOGGER.warning("visual page: verification attempts limited for %s", mask_phone(visit.phone))
    response = _message(visit.lang, "too_many", status=429)
    response.headers["Retry-After"] = str(wait)
    return response


async def verify(request: web.Request) -> web.Response:
    visit, call, form, refused = await _acting(request)
    if refused:
        return refused
    locked = _locked_out(request, visit)
    if locked:
        return locked
    methods = request.app[METHODS_KEY]
    method = str(form.get("method", ""))
    answer = str(form.get("answer", ""))[:32]
    if method not in methods:
        raise web.HTTPSeeOther("/v?notice=refused")
    if not await methods.check(Claimant(visit.call_id, call.profile), method, answer):
        limits = request.app[LIMITS_KEY]
        limits["number"].failed(visit.phone)
        limits["ip"].failed(client_ip(request))
        _LOGGER.warning("visual page: verification (%s) failed for call %s", method, visit.call_id)
        raise web.HTTPSeeOther("/v?notice=" + ("code_failed" if method == "otp" else "verify_failed"))
    request.app[LIMITS_KEY]["number"].succeeded(visit.phone)
    visit.verified = True
    call.mark_verified(method)
    raise web.HTTPSeeOther("/v?notice=verified_now")


async def send_code(request: web.Request) -> web.Response:
    """The "Text me a code" button: a new code to the number on file of the call's customer."""
    visit, call, form, refused = await _acting(request)
    if refused:
        return refused
    codes = request.app[METHODS_KEY].get("otp")
    if codes is None or call.verified:
        raise web.HTTPSeeOther("/v?notice=refused")
    locked = _locked_out(request, visit)
    if locked:
        return locked
    try:
        await codes.send(Claimant(visit.call_id, call.profile), visit.lang)
    except CodeRefused as exc:
        _LOGGER.warning("visual page: no code sent for call %s: %s", visit.call_id, exc.code)
        raise web.HTTPSeeOther("/v?notice=" + exc.code.replace("-", "_")) from None
    raise web.HTTPSeeOther("/v?notice=code_sent")
