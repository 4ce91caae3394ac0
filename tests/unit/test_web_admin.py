"""The web app and its admin page, in process with aiohttp's test client: sign-in required,
CSRF, wrong passwords rate-limited, sessions that expire, security headers on every answer,
error pages without tracebacks, charts as clean inline SVG, figures equal to `ivr stats`, and
hostile input escaped. Also the `web:` config section."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ivr.config import ConfigError, load_config
from ivr.store.stats import compute
from ivr.web.app import AUTH_KEY, CSP, build_web_app
from ivr.web.security import SESSION_COOKIE

from _statskit import handmade

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path):
    return handmade(tmp_path / "ivr.db")


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
async def client(config, store, clock):
    cfg = dataclasses.replace(config, web=dataclasses.replace(config.web, login_attempts=3))
    app = build_web_app(cfg, store, admin_password=PASSWORD)
    app[AUTH_KEY].clock = clock
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        yield c


async def login_form(client) -> str:
    response = await client.get("/admin/login")
    assert response.status == 200
    return CSRF.search(await response.text()).group(1)


async def sign_in(client, password=PASSWORD):
    csrf = await login_form(client)
    return await client.post("/admin/login", data={"csrf": csrf, "password": password},
                             allow_redirects=False)


def assert_headers(response):
    h = response.headers
    assert h["Content-Security-Policy"] == CSP
    assert "default-src 'none'" in CSP and "frame-ancestors 'none'" in CSP and "base-uri 'none'" in CSP
    assert h["Referrer-Policy"] == "no-referrer"
    assert h["Cache-Control"] == "no-store"
    assert h["X-Content-Type-Options"] == "nosniff"


# ---- sign-in ---------------------------------------------------------------------------

async def test_admin_needs_a_session(client):
    response = await client.get("/admin", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/admin/login"
    assert_headers(response)
    response = await client.get("/admin", allow_redirects=False, cookies={SESSION_COOKIE: "forged"})
    assert response.status == 303


async def test_right_password_opens_a_strict_httponly_session(client, store):
    response = await sign_in(client)
    assert response.status == 303 and response.headers["Location"] == "/admin"
    cookie = next(v for v in response.headers.getall("Set-Cookie") if v.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert len(cookie.split(";")[0].split("=", 1)[1]) >= 40  # 256 random bits
    page = await client.get("/admin")
    assert page.status == 200
    assert_headers(page)
    assert "Call analytics" in await page.text()


async def test_login_post_needs_the_forms_csrf_token(client):
    await login_form(client)  # sets the pre-session cookie
    response = await client.post("/admin/login", data={"password": PASSWORD}, allow_redirects=False)
    assert response.status == 403
    response = await client.post("/admin/login", data={"password": PASSWORD, "csrf": "0" * 64},
                                 allow_redirects=False)
    assert response.status == 403
    client.session.cookie_jar.clear()  # a token without its cookie is worthless
    csrf = await login_form(client)
    client.session.cookie_jar.clear()
    response = await client.post("/admin/login", data={"password": PASSWORD, "csrf": csrf},
                                 allow_redirects=False)
    assert response.status == 403
    assert SESSION_COOKIE not in {c.key for c in client.session.cookie_jar}


async def test_login_from_another_origin_is_refused(client):
    csrf = await login_form(client)
    response = await client.post("/admin/login", data={"password": PASSWORD, "csrf": csrf},
                                 headers={"Origin": "http://evil.example"}, allow_redirects=False)
    assert response.status == 403


async def test_wrong_passwords_are_rate_limited_per_ip(client, clock):
    for _ in range(3):
        response = await sign_in(client, "guess")
        assert response.status == 401
        assert "Wrong password." in await response.text()
    response = await sign_in(client)  # even the right one, while limited
    assert response.status == 429 and int(response.headers["Retry-After"]) > 0
    assert "Too many failed sign-ins" in await response.text()
    assert_headers(response)
    clock.now += 301  # login_window: the failures have left it
    assert (await sign_in(client)).status == 303


async def test_session_expires_when_idle(client, clock, config):
    assert (await sign_in(client)).status == 303
    clock.now += config.web.session_minutes * 60 - 5
    assert (await client.get("/admin", allow_redirects=False)).status == 200  # use restarts the idle time
    clock.now += config.web.session_minutes * 60 - 5
    assert (await client.get("/admin", allow_redirects=False)).status == 200
    clock.now += config.web.session_minutes * 60 + 1
    assert (await client.get("/admin", allow_redirects=False)).status == 303


async def test_sign_out_needs_csrf_and_ends_the_session(client):
    await sign_in(client)
    page = await (await client.get("/admin")).text()
    token = CSRF.search(page).group(1)
    assert (await client.post("/admin/logout", data={"csrf": "x"}, allow_redirects=False)).status == 403
    assert (await client.get("/admin", allow_redirects=False)).status == 200
    response = await client.post("/admin/logout", data={"csrf": token}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/admin/login"
    assert (await client.get("/admin", allow_redirects=False)).status == 303


def test_a_short_admin_password_is_refused(config, store):
    with pytest.raises(ValueError):
        build_web_app(config, store, admin_password="short")


# ---- the page ----------------------------------------------------------------------------

async def test_page_has_every_chart_as_clean_inline_svg(client):
    await sign_in(client)
    html = await (await client.get("/admin")).text()
    svgs = re.findall(r"<svg\b.*?</svg>", html, re.S)
    assert len(svgs) == 8
    for name in ("containment", "transfers", "handle-time", "steps", "funnels", "proactive",
                 "per-day", "per-hour"):
        assert f'id="chart-{name}"' in html
    for svg in svgs:
        assert 'role="img"' in svg and "aria-label=" in svg
        assert "<script" not in svg and "<style" not in svg and "style=" not in svg
        assert not re.search(r"\bon\w+=", svg)
        assert set(re.findall(r"https?://[^\"'\s<>)]+", svg)) <= {"http://www.w3.org/2000/svg",
                                                                  "http://www.w3.org/1999/xlink"}
    assert "<script" not in html and "style=" not in html  # nothing the CSP would block
    assert html.count("<table>") == 8


async def test_page_figures_are_those_of_ivr_stats(client, store, config):
    await sign_in(client)
    html = await (await client.get("/admin")).text()
    s = compute(store, tz=config.calendar.timezone)
    assert re.search(r'id="fig-calls">6<', html)
    assert re.search(r'id="fig-containment">50\.0%<', html) and s["containment"] == 0.5
    assert re.search(r'id="fig-resolved">25\.0%<', html)
    assert re.search(r'id="fig-aht">30\.8 s<', html)
    assert re.search(r'id="fig-acceptance">25\.0%<', html)
    assert re.search(r'id="fig-precision">50\.0%<', html)
    assert "<td>main_menu.choose</td><td>3</td><td>1</td><td>33.3%</td><td>2</td><td>66.7%</td>" in html
    assert "<td>open_claim</td><td>2</td><td>0</td><td>1</td><td>1</td><td>0.0%</td><td>50.0%</td>" in html


async def test_since_filters_the_page(client):
    await sign_in(client)
    html = await (await client.get("/admin", params={"since": "2026-12-03T00:00Z"})).text()
    assert re.search(r'id="fig-calls">2<', html)
    assert 'value="2026-12-03T00:00Z"' in html


@pytest.mark.parametrize("since", ['"><script>alert(1)</script>', "'; DROP TABLE calls; --", "x" * 5000])
async def test_hostile_since_is_shown_escaped_with_its_code(client, store, since):
    await sign_in(client)
    response = await client.get("/admin", params={"since": since})
    assert response.status == 200
    html = await response.text()
    assert "bad-since" in html and "<script>alert" not in html
    assert "&lt;script&gt;" in html or "script" not in since
    assert compute(store)["calls"] == 6


async def test_hostile_data_in_the_store_is_escaped(config, tmp_path):
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    app = build_web_app(config, handmade(tmp_path / "evil.db", evil=evil), admin_password=PASSWORD)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        await sign_in(c)
        html = await (await c.get("/admin")).text()
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert" in html


async def test_no_store_shows_a_notice_not_an_error(config, tmp_path):
    app = build_web_app(config, tmp_path / "none.db", admin_password=PASSWORD)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        await sign_in(c)
        response = await c.get("/admin")
        assert response.status == 200
        text = await response.text()
        assert "No call store yet" in text and "No calls in this window." in text
    assert not (tmp_path / "none.db").exists()


# ---- the app around it -------------------------------------------------------------------

async def test_errors_are_small_html_pages_with_headers(client, monkeypatch):
    response = await client.get("/no/such/page")
    assert response.status == 404 and response.content_type == "text/html"
    assert "http-404" in await response.text()
    assert_headers(response)
    response = await client.put("/admin")
    assert response.status == 405
    assert_headers(response)

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals /etc/passwd")

    monkeypatch.setattr("ivr.web.admin.compute", broken)
    await sign_in(client)
    response = await client.get("/admin")
    text = await response.text()
    assert response.status == 500 and "internal-error" in text
    assert "Traceback" not in text and "secret internals" not in text
    assert_headers(response)


async def test_favicon_static_and_chart_css(client):
    for path, kind in (("/favicon.ico", "image/svg+xml"), ("/static/admin.css", "text/css"),
                       ("/static/charts.css", "text/css")):
        response = await client.get(path)
        assert response.status == 200 and response.content_type == kind, path
        assert_headers(response)
    css = await (await client.get("/static/charts.css")).text()
    assert ".pygal-chart .color-0" in css and "#chart-" not in css and "@import" not in css
    assert not re.search(r"url\(|https?:", css)
    assert (await client.get("/static/../ivr.db")).status in (403, 404)
    assert (await client.get("/", allow_redirects=False)).headers["Location"] == "/admin"


async def test_a_large_body_is_refused(client):
    csrf = await login_form(client)
    response = await client.post("/admin/login", data={"csrf": csrf, "password": "x" * 200_000})
    assert response.status == 413


# ---- config -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, key", [
    ("web: {port: 0}", "web.port"), ("web: {port: '80'}", "web.port"),
    ("web: {public_url: 'javascript:alert(1)'}", "web.public_url"),
    ("web: {session_minutes: 0}", "web.session_minutes"),
    ("web: {login_attempts: 0}", "web.login_attempts"), ("web: {colour: red}", "web.colour"),
])
def test_bad_web_config_names_the_key(tmp_path, text, key):
    path = tmp_path / "config.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert key in str(caught.value)


def test_web_defaults(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("profile: development\n")
    web = load_config(str(path)).web
    assert (web.bind, web.port, web.public_url) == ("127.0.0.1", 8080, "http://127.0.0.1:8080")
    assert web.enabled and web.session_minutes == 30 and web.login_attempts == 5


async def test_cross_site_fetch_metadata_is_refused_and_null_origin_is_not(client):
    csrf = await login_form(client)
    response = await client.post("/admin/login", data={"password": PASSWORD, "csrf": csrf},
                                 headers={"Sec-Fetch-Site": "cross-site"}, allow_redirects=False)
    assert response.status == 403
    csrf = await login_form(client)
    response = await client.post("/admin/login", data={"password": PASSWORD, "csrf": csrf},
                                 headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"},
                                 allow_redirects=False)
    assert response.status == 303  # what Chromium sends under Referrer-Policy: no-referrer


# ---- serving (what `ivr serve` and `ivr web` run) ---------------------------------------------

async def test_start_web_serves_and_stops_and_keeps_the_password(config, store, tmp_path, monkeypatch):
    import json
    import socket

    import aiohttp

    from ivr.errors import IvrError
    from ivr.web.run import start_web

    monkeypatch.setenv("IVR_VAR_DIR", str(tmp_path / "var"))
    server = await start_web(config, store, port=0)
    try:
        secrets = json.loads((tmp_path / "var" / "secrets.json").read_text())
        password = secrets["WEB_ADMIN_PASSWORD"]
        assert len(password) >= 24
        assert (tmp_path / "var" / "secrets.json").stat().st_mode & 0o077 == 0
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:  # an IP host
            async with http.get(f"http://127.0.0.1:{server.port}/admin/login") as response:
                assert response.status == 200
                token = CSRF.search(await response.text()).group(1)
            async with http.post(f"http://127.0.0.1:{server.port}/admin/login",
                                 data={"csrf": token, "password": password}) as response:
                assert response.status == 200 and str(response.url).endswith("/admin")
        with pytest.raises(IvrError) as caught:  # the same port again: a clear error
            await start_web(config, store, port=server.port)
        assert caught.value.code == "web-port-busy"
    finally:
        await server.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
    again = json.loads((tmp_path / "var" / "secrets.json").read_text())["WEB_ADMIN_PASSWORD"]
    assert again == password  # generated once per install


async def test_open_websockets_are_closed_on_shutdown(config, store):
    from aiohttp import web

    from ivr.web.app import SOCKETS_KEY

    def live(app):
        async def socket_handler(request):
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            request.app[SOCKETS_KEY].add(ws)
            async for _ in ws:
                pass
            return ws
        app.router.add_get("/live", socket_handler)

    app = build_web_app(config, store, admin_password=PASSWORD, pages_setup=[live])
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    ws = await client.ws_connect("/live")
    import asyncio

    await asyncio.wait_for(app.shutdown(), 10)  # what AppRunner.cleanup() runs first
    msg = await asyncio.wait_for(ws.receive(), 5)
    assert msg.type.name == "CLOSE" and msg.data == 1001 and msg.extra == "server shutdown"
    await asyncio.wait_for(client.close(), 10)


async def test_charts_of_a_window_with_calls_but_none_ended(client):
    await sign_in(client)
    html = await (await client.get("/admin", params={"since": "2026-12-03T09:15Z"})).text()
    assert re.search(r'id="fig-calls">1<', html) and re.search(r'id="fig-containment">-<', html)
    assert html.count("<svg") == 8 and "Containment: no ended calls" in html
