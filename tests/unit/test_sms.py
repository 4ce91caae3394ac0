"""SMS: link tokens (hashed, bound, expiring, single-use, revoked with the call), the outbox,
and the HTTP gateway's retries against a real local HTTP server."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import pytest
from aiohttp import web

from ivr.sms.gateways import EmbeddedGateway, HttpGateway
from ivr.sms.outbox import SmsOutbox, read_outbox
from ivr.store.links import LinkRejected, LinkTokens, token_hash


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_tokens_are_hashed_bound_expiring_single_use_and_die_with_the_call(tmp_path):
    clock = Clock()
    links = LinkTokens(tmp_path / "ivr.db", ttl=600, clock=clock)
    token = links.issue("call-1", "+8613800000001", "visual")
    assert len(token) >= 43  # 32 bytes, urlsafe base64
    raw = (tmp_path / "ivr.db").read_bytes() + (tmp_path / "ivr.db-wal").read_bytes()
    assert token.encode() not in raw and token_hash(token).encode() in raw
    assert links.check(token).call_id == "call-1"  # a GET: not spent
    assert links.check(token).phone == "+8613800000001"
    grant = links.spend(token)
    assert (grant.call_id, grant.purpose) == ("call-1", "visual")
    with pytest.raises(LinkRejected) as err:
        links.spend(token)
    assert err.value.code == "link-spent"
    late = links.issue("call-1", "+8613800000001", "visual")
    clock.now += 601
    with pytest.raises(LinkRejected) as err:
        links.check(late)
    assert err.value.code == "link-expired"
    live = links.issue("call-2", "+8613800000001", "visual")
    assert links.revoke_call("call-2") == 1
    with pytest.raises(LinkRejected) as err:
        links.spend(live)
    assert err.value.code == "link-call-ended"
    for forged in ("", "x" * 43, "../../etc/passwd", token + "A"):
        with pytest.raises(LinkRejected) as err:
            links.check(forged)
        assert err.value.code == "link-unknown"


async def test_outbox_records_the_link_and_embedded_delivery(tmp_path):
    outbox = SmsOutbox(tmp_path / "ivr.db", EmbeddedGateway(), base_url="http://127.0.0.1:8080/")
    url = await outbox.send_link("call-1", "+8613800000001", "visual", lang="zh")
    assert url.startswith("http://127.0.0.1:8080/v/")
    await outbox.drain(5)
    (msg,) = read_outbox(tmp_path / "ivr.db")
    assert msg["url"] == url and msg["status"] == "sent" and msg["to"] == "+86*******0001"
    assert "港湾金融" in msg["text"] and "10分钟" in msg["text"]
    token = url.rsplit("/", 1)[1]
    assert outbox.links.check(token).call_id == "call-1"
    outbox.call_ended("call-without-links")
    assert not outbox._tasks, "a call without links costs no thread"
    outbox.call_ended("call-1")
    await outbox.drain(5)
    with pytest.raises(LinkRejected):
        outbox.links.check(token)
    await outbox.close()


@pytest.fixture
async def provider():
    """A fake SMS provider on loopback: fails the first N requests with 503, then accepts."""
    state = {"fail": 2, "requests": [], "status": 503}

    async def handle(request: web.Request) -> web.Response:
        state["requests"].append({"body": await request.text(), "auth": request.headers.get("Authorization")})
        if state["fail"] > 0:
            state["fail"] -= 1
            return web.Response(status=state["status"], text="busy")
        return web.json_response({"id": "m1"})

    app = web.Application()
    app.router.add_post("/send", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    state["url"] = f"http://127.0.0.1:{port}/send"
    yield state
    await runner.cleanup()


async def test_http_gateway_retries_with_backoff_then_delivers(tmp_path, provider):
    gateway = HttpGateway(provider["url"], headers={"Authorization": "Bearer k"},
                          body='{"to": "$to", "message": "$text"}')
    outbox = SmsOutbox(tmp_path / "ivr.db", gateway, base_url="http://h", retries=3, backoff=0.05)
    url = await outbox.send_link("c", "+15550100005", "visual")  # returns before delivery
    await outbox.drain(10)
    assert len(provider["requests"]) == 3
    sent = json.loads(provider["requests"][-1]["body"])
    assert sent["to"] == "+15550100005" and url in sent["message"]
    assert provider["requests"][0]["auth"] == "Bearer k"
    (msg,) = read_outbox(tmp_path / "ivr.db")
    assert (msg["status"], msg["attempts"]) == ("sent", 3)
    assert url not in msg["text"]  # delivered by a real gateway: the token is not kept
    await outbox.close()


async def test_http_gateway_gives_up_without_breaking_the_call(tmp_path, provider):
    provider["fail"], provider["status"] = 99, 401  # a wrong key: retrying will not help
    outbox = SmsOutbox(tmp_path / "ivr.db", HttpGateway(provider["url"]), base_url="http://h",
                       retries=3, backoff=0.05)
    await outbox.send_link("c", "+15550100005", "visual")
    await outbox.drain(10)
    assert len(provider["requests"]) == 1
    (msg,) = read_outbox(tmp_path / "ivr.db")
    assert msg["status"] == "failed" and "401" in msg["error"]
    dead = SmsOutbox(tmp_path / "b.db", HttpGateway("http://127.0.0.1:9/nothing", timeout=1),
                     base_url="http://h", retries=1, backoff=0.05)
    await dead.send_link("c", "+15550100005", "visual")
    await dead.drain(10)
    (msg,) = read_outbox(tmp_path / "b.db")
    assert msg["status"] == "failed" and msg["attempts"] == 2 and "unreachable" in msg["error"]
    await outbox.close()
    await dead.close()


def test_http_body_is_escaped_for_its_content_type():
    gateway = HttpGateway("http://x", body='{"to": "$to", "text": "$text"}')
    assert json.loads(gateway.render("+1", 'say "hi"\n}')) == {"to": "+1", "text": 'say "hi"\n}'}
    form = HttpGateway("http://x", body="to=$to&text=$text", content_type="application/x-www-form-urlencoded")
    assert form.render("+1 2", "a&b=c") == "to=%2B1%202&text=a%26b%3Dc"
