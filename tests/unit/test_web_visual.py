"""The caller's visual page, in process over a live (simulated) call: the link's GET/POST
contract and headers, replayed/expired/ended/forged links and cookies, CSRF, the websocket's
Origin check and live feed, taps and keypad entries that move the call, hostile text kept
inert, and verification with its rate limit."""

from __future__ import annotations

import asyncio
import re

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ivr import events as ev
from ivr.flow.channel import CallerInput
from ivr.live import LiveCalls
from ivr.services import ProfileVerifier
from ivr.store.links import LinkTokens
from ivr.web.app import build_web_app
from ivr.web.visual import VISIT_COOKIE, setup_for
from ivr.web.visits import Visits

from test_live import OLIVIA, next_choices, start

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
PAGE_CSRF = re.compile(r'data-csrf="([^"]+)"')


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def hotline(config, tmp_path):
    """A live call (Olivia at the main menu), its link token, and the web app over it."""
    runner, channel, call, task = await start(OLIVIA)
    active = {runner.state.call_id: runner}
    clock = Clock()
    links = LinkTokens(tmp_path / "ivr.db", ttl=600, clock=clock)
    visits = Visits()
    app = build_web_app(config, tmp_path / "ivr.db", admin_password="x" * 16,
                        pages_setup=[setup_for(LiveCalls(active), links, ProfileVerifier(), visits,
                                               per_number=3)])
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        token = links.issue(runner.state.call_id, OLIVIA, "visual")
        yield {"client": client, "runner": runner, "channel": channel, "links": links, "token": token,
               "clock": clock, "active": active, "visits": visits}
    channel.inject(CallerInput("click", "hangup"))
    await asyncio.wait_for(task, 5)
    links.close()


async def open_page(client, token: str):
    got = await client.get(f"/v/{token}")
    assert got.status == 200
    csrf = CSRF.search(await got.text()).group(1)
    return await client.post(f"/v/{token}", data={"csrf": csrf}, allow_redirects=False)


async def test_get_shows_continue_and_only_the_post_spends_the_token(hotline):
    client, token = hotline["client"], hotline["token"]
    for _ in range(2):  # a link previewer's GET spends nothing
        got = await client.get(f"/v/{token}")
        assert got.status == 200 and "Continue" in await got.text()
        assert got.headers["Referrer-Policy"] == "no-referrer"
        assert got.headers["Cache-Control"] == "no-store"
        assert "default-src 'none'" in got.headers["Content-Security-Policy"]
    posted = await open_page(client, token)
    assert posted.status == 303 and posted.headers["Location"] == "/v"  # no token in the URL
    cookie = posted.cookies[VISIT_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    page = await client.get("/v")
    assert page.status == 200 and "Your call" in await page.text()
    replay = await client.get(f"/v/{token}")
    assert replay.status == 410 and "already" in (await replay.text())


async def test_bad_links_and_forged_cookies_are_refused(hotline, tmp_path):
    client, links, runner = hotline["client"], hotline["links"], hotline["runner"]
    assert (await client.post(f"/v/{hotline['token']}", data={})).status == 403  # no CSRF token
    assert (await client.get("/v/" + "A" * 43)).status == 404
    late = links.issue(runner.state.call_id, OLIVIA, "visual")
    hotline["clock"].now += 601
    assert (await client.get(f"/v/{late}")).status == 410
    other = links.issue("a-call-that-ended", OLIVIA, "visual")
    hotline["clock"].now = 1_000_000.0
    links.revoke_call("a-call-that-ended")
    assert (await client.get(f"/v/{other}")).status == 410
    gone = links.issue("no-such-live-call", OLIVIA, "visual")
    assert (await open_page(client, gone)).status == 410  # a token for a call that is not running
    client.session.cookie_jar.update_cookies({VISIT_COOKIE: "forged-" + "x" * 40})
    assert (await client.get("/v")).status == 403
    assert (await client.post("/v/tap", data={"csrf": "x", "value": "1"})).status == 403


async def visit(hotline):
    client = hotline["client"]
    await open_page(client, hotline["token"])
    page = await client.get("/v")
    return PAGE_CSRF.search(await page.text()).group(1)


async def test_the_feed_refuses_a_foreign_origin_and_a_tap_moves_the_call(hotline):
    client, runner, channel = hotline["client"], hotline["runner"], hotline["channel"]
    csrf = await visit(hotline)
    with pytest.raises(Exception):
        await client.ws_connect("/v/ws", headers={"Origin": "http://evil.example"})
    origin = f"http://{client.host}:{client.port}"
    await next_choices(runner, "main_menu.choose")
    ws = await client.ws_connect("/v/ws", headers={"Origin": origin})
    hello = await ws.receive_json(timeout=3)
    assert hello["type"] == "hello"
    said = [e for e in hello["events"] if e["type"] == "said"]
    assert said[0]["text"] == "Welcome to Harbor Financial Group."
    menu = [e for e in hello["events"] if e["type"] == "choices"][-1]
    assert {"value": "3", "label": "credit cards"} in menu["items"]
    await ws.send_json({"type": "tap", "value": "3", "csrf": "wrong"})
    assert (await ws.receive_json(timeout=3))["why"] == "csrf"
    await ws.send_json({"type": "tap", "value": "3", "csrf": csrf})
    seen = []
    async with asyncio.timeout(3):
        while not any(e.get("type") == "choices" and e["step"] == "cards_menu.choose" for e in seen):
            seen.append(await ws.receive_json())
    assert any(e.get("text") == "You chose credit cards." for e in seen)
    # hostile text reaches the page as a plain string (the page renders it with textContent)
    hostile = '<script>alert("x")</script>\n"quoted"'
    runner.stream.publish(ev.Prompt(t=1.0, text=hostile, lang="en"))
    async with asyncio.timeout(3):
        while True:
            data = await ws.receive_json()
            if data.get("type") == "said" and data["text"] == hostile:
                break
    await ws.close()
    page = await (await client.get("/v")).text()
    assert "<script>alert" not in page
    # a dropped feed catches up from where it was
    ws = await client.ws_connect(f"/v/ws?since={len(runner.stream.history) - 1}", headers={"Origin": origin})
    hello = await ws.receive_json(timeout=3)
    assert [e["text"] for e in hello["events"] if e["type"] == "said"] == [hostile]
    await ws.close()


async def test_keypad_entry_through_the_form_fills_the_slot(hotline):
    client, runner = hotline["client"], hotline["runner"]
    csrf = await visit(hotline)
    await next_choices(runner, "main_menu.choose")
    assert (await client.post("/v/tap", data={"csrf": csrf, "value": "3"}, allow_redirects=False)).status == 303
    await next_choices(runner, "cards_menu.choose")
    await client.post("/v/tap", data={"csrf": csrf, "value": "2"})  # lost card
    await next_choices(runner, "card_lost.card_last4")
    bad = await client.post("/v/keys", data={"csrf": csrf, "value": "24x8"}, allow_redirects=False)
    assert bad.headers["Location"].endswith("refused")
    await client.post("/v/keys", data={"csrf": csrf, "value": "2468"})
    await next_choices(runner, "card_lost.confirm_freeze")
    assert runner.state.slots["card_last4"] == "2468"


async def test_verification_on_the_page_reaches_the_call_and_shows_the_policies(hotline):
    client, runner, channel = hotline["client"], hotline["runner"], hotline["channel"]
    csrf = await visit(hotline)
    wrong = await client.post("/v/verify", data={"csrf": csrf, "method": "dob", "answer": "1999-01-01"})
    assert "match our records" in await wrong.text()
    assert not runner.state.verified
    ok = await client.post("/v/verify", data={"csrf": csrf, "method": "dob", "answer": "1988-12-24"})
    text = await ok.text()
    assert "you are verified" in text and "•••• 2468" in text and "Policies" in text
    assert runner.state.verified and runner.state.verified_method == "web-dob"
    async with asyncio.timeout(2):
        while "Thank you, you are verified." not in channel.prompts:
            await asyncio.sleep(0.01)


async def test_brute_forcing_the_second_factor_is_rate_limited(hotline):
    client = hotline["client"]
    csrf = await visit(hotline)
    for guess in ("19000101", "19000102", "19000103"):
        got = await client.post("/v/verify", data={"csrf": csrf, "method": "dob", "answer": guess})
        assert got.status == 200
    limited = await client.post("/v/verify", data={"csrf": csrf, "method": "dob", "answer": "1988-12-24"})
    assert limited.status == 429 and int(limited.headers["Retry-After"]) > 0
    assert not hotline["runner"].state.verified  # even the right answer waits


async def test_the_page_dies_when_the_call_ends(hotline):
    client = hotline["client"]
    await visit(hotline)
    call_id = hotline["runner"].state.call_id
    hotline["visits"].end_call(call_id)
    assert (await client.get("/v")).status == 403
