"""The caller's visual page, in process over a live (simulated) call: the link's GET/POST
contract and headers, replayed/expired/ended/forged links and cookies, CSRF, the websocket's
Origin check and live feed, taps and keypad entries that move the call, hostile text kept
inert, and verification with its rate limit: the knowledge factors, the texted one-time code
(outbox, expiry, single use, 3 per call, CSRF) and a method plugged in through the interface."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ivr import events as ev
from ivr.flow.channel import CallerInput
from ivr.live import LiveCalls
from ivr.privacy import mask_phone
from ivr.services import ProfileVerifier
from ivr.sms.gateways import EmbeddedGateway
from ivr.sms.outbox import SmsOutbox, read_outbox
from ivr.store.links import LinkTokens
from ivr.verification import Claimant, OneTimeCodes, page_methods
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
    outbox = SmsOutbox(tmp_path / "ivr.db", EmbeddedGateway(), base_url="http://127.0.0.1:8080", links=links)
    methods = page_methods(ProfileVerifier(), outbox, clock=clock)
    visits = Visits()
    app = build_web_app(config, tmp_path / "ivr.db", admin_password="x" * 16,
                        pages_setup=[setup_for(LiveCalls(active), links, methods, visits, per_number=3)])
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        token = links.issue(runner.state.call_id, OLIVIA, "visual")
        yield {"client": client, "runner": runner, "channel": channel, "links": links, "token": token,
               "clock": clock, "active": active, "visits": visits, "outbox": outbox, "methods": methods,
               "db": tmp_path / "ivr.db"}
    channel.inject(CallerInput("click", "hangup"))
    await asyncio.wait_for(task, 5)
    await outbox.close()  # closes the links too


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
    assert said[0]["text"].startswith("Welcome to Harbor Financial Group.")
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


# ---- the texted one-time code -----------------------------------------------------------

CODE = re.compile(r"(?<!\d)(\d{6})(?!\d)")


async def text_me_a_code(hotline, csrf: str) -> str:
    """Press "Text me a code"; the code from the newest message in the outbox."""
    sent = await hotline["client"].post("/v/code", data={"csrf": csrf}, allow_redirects=False)
    assert sent.status == 303 and sent.headers["Location"] == "/v?notice=code_sent"
    await hotline["outbox"].drain(5)
    return CODE.search(read_outbox(hotline["db"], 1)[0]["text"]).group(1)


async def enter_code(client, csrf: str, code: str):
    return await client.post("/v/verify", data={"csrf": csrf, "method": "otp", "answer": code},
                             allow_redirects=False)


async def test_a_code_texted_to_the_number_on_file_verifies_the_call(hotline, caplog):
    caplog.set_level(logging.DEBUG)
    client, runner, channel = hotline["client"], hotline["runner"], hotline["channel"]
    csrf = await visit(hotline)
    page = await (await client.get("/v")).text()
    assert 'action="/v/code"' in page and "Text me a code" in page and 'id="otp-code"' not in page
    code = await text_me_a_code(hotline, csrf)
    [message] = [m for m in read_outbox(hotline["db"]) if m["purpose"] == "otp"]
    assert message["to"] == mask_phone(OLIVIA) and message["call_id"] == runner.state.call_id
    assert message["status"] == "sent" and message["url"] == "" and "http" not in message["text"]
    assert "Harbor Financial" in message["text"] and "5 minutes" in message["text"]
    page = await (await client.get("/v?notice=code_sent")).text()
    assert 'id="otp-code"' in page and 'autocomplete="one-time-code"' in page
    assert f"sent to {mask_phone(OLIVIA)}" in page and "Send a new code" in page
    ok = await enter_code(client, csrf, code)
    assert ok.status == 303 and ok.headers["Location"] == "/v?notice=verified_now"
    assert runner.state.verified and runner.state.verified_method == "web-otp"
    assert [e.method for e in runner.stream.history if isinstance(e, ev.Verified)] == ["web-otp"]
    async with asyncio.timeout(2):
        while "Thank you, you are verified." not in channel.prompts:
            await asyncio.sleep(0.01)
    page = await (await client.get("/v")).text()
    assert "•••• 2468" in page and 'action="/v/code"' not in page
    assert code not in caplog.text and OLIVIA not in caplog.text  # never logged; the number masked


async def test_guessing_the_code_is_rate_limited_with_the_other_factors(hotline):
    client = hotline["client"]
    csrf = await visit(hotline)
    code = await text_me_a_code(hotline, csrf)
    wrong = f"{(int(code) + 1) % 10 ** 6:06d}"
    for guess in (wrong, "12345", "abcdef"):
        got = await enter_code(client, csrf, guess)
        assert got.status == 303 and got.headers["Location"] == "/v?notice=code_failed"
    limited = await enter_code(client, csrf, code)
    assert limited.status == 429 and int(limited.headers["Retry-After"]) > 0
    assert not hotline["runner"].state.verified  # even the right code waits
    # no new code while locked out, and the knowledge factors share the limit
    assert (await client.post("/v/code", data={"csrf": csrf}, allow_redirects=False)).status == 429
    dob = await client.post("/v/verify", data={"csrf": csrf, "method": "dob", "answer": "1988-12-24"})
    assert dob.status == 429


async def test_an_expired_code_and_a_used_code_are_refused(hotline):
    client, runner = hotline["client"], hotline["runner"]
    csrf = await visit(hotline)
    late = await text_me_a_code(hotline, csrf)
    hotline["clock"].now += 301  # 5 minutes and a second
    assert (await enter_code(client, csrf, late)).headers["Location"] == "/v?notice=code_failed"
    assert not runner.state.verified
    assert 'id="otp-code"' not in await (await client.get("/v")).text()  # nothing waits any more
    code = await text_me_a_code(hotline, csrf)
    assert (await enter_code(client, csrf, code)).headers["Location"] == "/v?notice=verified_now"
    assert (await enter_code(client, csrf, code)).headers["Location"] == "/v?notice=code_failed"
    codes = hotline["methods"].get("otp")
    claimant = Claimant(runner.state.call_id, {"phone": OLIVIA})
    assert not await codes.check(claimant, code)


async def test_a_fourth_code_is_refused_and_only_the_newest_code_counts(hotline):
    client, runner = hotline["client"], hotline["runner"]
    csrf = await visit(hotline)
    first = await text_me_a_code(hotline, csrf)
    await text_me_a_code(hotline, csrf)
    newest = await text_me_a_code(hotline, csrf)
    fourth = await client.post("/v/code", data={"csrf": csrf}, allow_redirects=False)
    assert fourth.status == 303 and fourth.headers["Location"] == "/v?notice=otp_limit"
    await hotline["outbox"].drain(5)
    assert len([m for m in read_outbox(hotline["db"]) if m["purpose"] == "otp"]) == 3
    page = await (await client.get("/v?notice=otp_limit")).text()
    assert "No more codes can be sent on this call" in page and 'action="/v/code"' not in page
    if first != newest:
        assert (await enter_code(client, csrf, first)).headers["Location"] == "/v?notice=code_failed"
    assert (await enter_code(client, csrf, newest)).headers["Location"] == "/v?notice=verified_now"
    assert runner.state.verified_method == "web-otp"


async def test_a_code_request_without_the_csrf_token_or_from_another_site_is_refused(hotline):
    client = hotline["client"]
    csrf = await visit(hotline)
    assert (await client.post("/v/code", data={}, allow_redirects=False)).status == 403
    assert (await client.post("/v/code", data={"csrf": "forged"}, allow_redirects=False)).status == 403
    foreign = await client.post("/v/code", data={"csrf": csrf}, allow_redirects=False,
                                headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"})
    assert foreign.status == 403
    await hotline["outbox"].drain(5)
    assert read_outbox(hotline["db"]) == []
    assert (await enter_code(client, "forged", "123456")).status == 403


async def test_the_code_is_kept_only_hashed_and_a_real_gateway_row_never_holds_it(tmp_path):
    class ProviderGateway:
        name, keeps_body = "http", False

        def __init__(self) -> None:
            self.delivered: list[tuple[str, str]] = []

        async def deliver(self, to: str, text: str) -> None:
            self.delivered.append((to, text))

        async def close(self) -> None:
            pass

    gateway = ProviderGateway()
    outbox = SmsOutbox(tmp_path / "ivr.db", gateway, base_url="http://127.0.0.1:8080")
    codes = OneTimeCodes(outbox)
    claimant = Claimant("call-zh", {"phone": "+8613800000001", "mobile": "+8613900000009"})
    assert await codes.send(claimant, "zh") == mask_phone("+8613900000009")  # the mobile first
    await outbox.drain(5)
    [(to, text)] = gateway.delivered
    code = CODE.search(text).group(1)
    assert to == "+8613900000009" and "验证码" in text and "http" not in text
    assert code not in read_outbox(tmp_path / "ivr.db")[0]["text"]
    assert code.encode() not in repr(vars(codes)).encode()  # only an HMAC of it in memory
    other_call = Claimant("call-other", claimant.profile)
    assert not await codes.check(other_call, code)  # bound to its call
    moved = Claimant("call-zh", {"mobile": "+8613700000007"})
    assert not await codes.check(moved, code)  # and to the number it went to
    assert await codes.check(claimant, code)
    with pytest.raises(Exception) as err:
        await codes.send(Claimant("call-x", {"name": "no number"}))
    assert err.value.code == "otp-no-number"
    await outbox.close()


async def test_a_stronger_method_plugs_into_the_same_interface(hotline):
    class FaceCheck:  # stands in for a liveness provider: passes one capture session
        name = "face"

        async def check(self, claimant: Claimant, answer: str) -> bool:
            return claimant.profile.get("phone") == OLIVIA and answer == "session-ok"

    hotline["methods"].add(FaceCheck())
    client, runner = hotline["client"], hotline["runner"]
    csrf = await visit(hotline)
    bad = await client.post("/v/verify", data={"csrf": csrf, "method": "face", "answer": "session-bad"},
                            allow_redirects=False)
    assert bad.headers["Location"] == "/v?notice=verify_failed"
    unknown = await client.post("/v/verify", data={"csrf": csrf, "method": "palm", "answer": "x"},
                                allow_redirects=False)
    assert unknown.headers["Location"] == "/v?notice=refused"
    await client.post("/v/verify", data={"csrf": csrf, "method": "face", "answer": "session-ok"})
    assert runner.state.verified_method == "web-face"
