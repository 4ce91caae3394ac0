"""The visual page over a real call on the ARI controller, with aiohttp as the page (the browser
flow is tests/e2e/test_visual_page.py, on FastAGI).

A customer the test imports calls and only listens; the link is texted at call start
(`visual.auto_offer`, set from the Asterisk CLI). The test checks the link's contract on the
wire (a GET spends nothing and carries the security headers, the POST spends it, a replay is
refused), follows the call's feed over the websocket (a foreign Origin is refused), and taps
"credit cards" while the main menu's prompt is still playing: on ARI the prompt stops and the
call says "You chose credit cards." within a second of the tap.
"""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from conftest import wait_for
from test_visual_page import import_customer, latest_link

pytestmark = pytest.mark.e2e

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
PAGE_CSRF = re.compile(r'data-csrf="([^"]+)"')


def test_ari_tap_stops_the_prompt_and_moves_the_call(hotline_ari):
    import_customer(hotline_ari)
    hotline_ari.rx("database put ivr visual.auto_offer 1")
    try:
        time.sleep(1.0)  # the controller reads AstDB flags every 0.5 s
        before = hotline_ari.call_ids()
        placed = hotline_ari.call_async("visual_listen.yaml", sipp_timeout=120, wait=15, end_wait_ms=25_000)
        sms = wait_for(lambda: latest_link(hotline_ari.store_path, before), 20, 0.2,
                       what="the visual page's link in the SMS outbox")
        tap_to_reply = asyncio.run(_drive(hotline_ari.config.web.public_url, sms["url"]))
        calls = placed.result(timeout=180)
    finally:
        hotline_ari.rx("database del ivr visual.auto_offer")
    (call,) = calls
    taps = [e["value"] for e in call["events"] if e["type"] == "input" and e["kind"] == "click"]
    assert taps[:1] == ["3"], taps
    assert "cards_menu" in call["scenes"], call["scenes"]
    print(f"tap to reply: {tap_to_reply:.3f} s")
    assert tap_to_reply < 1.0, f"{tap_to_reply:.3f} s from the tap to the call's reply"
    hotline_ari.wait_no_channels()


async def _drive(base: str, url: str) -> float:
    """Open the link as a page would; tap over the menu prompt; the seconds until the reply."""
    import aiohttp

    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:  # cookies for an IP host
        for _ in range(2):  # a link previewer's GET spends nothing
            got = await http.get(url)
            assert got.status == 200, got.status
            assert got.headers["Referrer-Policy"] == "no-referrer"
            assert got.headers["Cache-Control"] == "no-store"
            assert "default-src 'none'" in got.headers["Content-Security-Policy"]
            csrf = CSRF.search(await got.text()).group(1)
        posted = await http.post(url, data={"csrf": csrf}, allow_redirects=False)
        assert posted.status == 303 and posted.headers["Location"] == "/v"
        replay = await http.post(url, data={"csrf": csrf}, allow_redirects=False)
        assert replay.status in (403, 410), replay.status  # its form's nonce went with the spend
        again = await http.get(url)
        assert again.status == 410 and "already" in await again.text()  # the link is spent
        page = await http.get(base + "/v")
        assert page.status == 200
        page_csrf = PAGE_CSRF.search(await page.text()).group(1)
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(base + "/v/ws", origin="https://evil.example")
        async with http.ws_connect(base + "/v/ws", origin=base) as ws:
            async with asyncio.timeout(30):
                while True:  # the main menu's options, while its prompt plays
                    msg = await ws.receive_json()
                    events = msg.get("events", [msg])
                    if any(e.get("type") == "choices" and e.get("step") == "main_menu.choose" for e in events):
                        break
            await asyncio.sleep(1.5)  # well inside the ~12 s menu prompt
            tapped = time.monotonic()
            await ws.send_json({"type": "tap", "value": "3", "csrf": page_csrf})
            async with asyncio.timeout(10):
                while True:
                    msg = await ws.receive_json()
                    if msg.get("type") == "said" and "You chose credit cards" in msg.get("text", ""):
                        return time.monotonic() - tapped
