"""The visual page's live feed: which call events a caller's page may see, and the websocket
that pushes them (and takes taps and keypad entries back).

Only what the caller heard and did is shown: prompts, their own (already masked) inputs, the
current step's choices, verification, and the end of the call. Slots, intents, lookups,
proactive scores and timings stay on the server. The browser renders every text with
`textContent`, never as HTML.

Each live message (not the `hello` backlog) also carries `at`: the server's wall-clock time
(`time.time()`, seconds) when the call published the event, while `t` is the call's own clock.
The page ignores it; `ivr bench visual` subtracts it from its receive time to measure the
event-to-page delay (both on one machine, so the clocks agree).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from ivr import events as ev

_LOGGER = logging.getLogger(__name__)
MAX_MESSAGE = 2048  # a tap or a keypad entry is tiny
QUEUE_LIMIT = 500


def page_event(event: ev.Event, index: int) -> dict[str, Any] | None:
    """The page's form of a call event, or None when the page does not show it."""
    base = {"n": index, "t": round(event.t, 2)}
    if isinstance(event, ev.Prompt):
        return {**base, "type": "said", "who": "ivr", "text": event.text}
    if isinstance(event, ev.Input):
        if event.kind not in ("dtmf", "speech", "click"):
            return None
        return {**base, "type": "said", "who": "caller", "kind": event.kind, "text": event.value}
    if isinstance(event, ev.Choices):
        return {**base, "type": "choices", "step": event.step,
                "items": [{"value": str(i.get("value", "")), "label": str(i.get("label", ""))}
                          for i in event.items], "entry": event.entry}
    if isinstance(event, ev.Step):
        return {**base, "type": "step"}
    if isinstance(event, ev.Verified):
        return {**base, "type": "verified", "ok": bool(event.ok)}
    if isinstance(event, ev.Transfer):
        return {**base, "type": "ended", "how": "transfer"}
    if isinstance(event, ev.Hangup):
        return {**base, "type": "ended", "how": "hangup"}
    return None


def origin_allowed(request: web.Request, public_url: str) -> bool:
    """The websocket's Origin must be this site (its public URL, or the host it was asked on)."""
    origin = request.headers.get("Origin")
    if not origin:
        return False
    public = urlsplit(public_url)
    allowed = {f"{public.scheme}://{public.netloc}", f"{request.scheme}://{request.host}"}
    return origin in allowed


async def follow(ws: web.WebSocketResponse, call, visit, since: int) -> None:
    """Send the call's page events from `since`, then each new one as it happens, and take the
    page's taps and keypad entries until the call ends or the page goes."""
    queue: asyncio.Queue = asyncio.Queue(QUEUE_LIMIT)
    counter = {"n": 0}

    def on_event(event: ev.Event) -> None:
        counter["n"] += 1
        data = page_event(event, counter["n"])
        if data is not None and not queue.full():
            data["at"] = round(time.time(), 4)  # publish time, for `ivr bench visual`
            queue.put_nowait(data)

    history = call.history
    counter["n"] = len(history)
    unsubscribe = call.subscribe(on_event)  # subscribed before the catch-up: nothing falls between
    try:
        backlog = [d for i, e in enumerate(history, 1) if i > since and (d := page_event(e, i))]
        await ws.send_json({"type": "hello", "lang": visit.lang, "verified": call.verified,
                            "events": backlog}, dumps=_dumps)
        sender = asyncio.create_task(_send(ws, queue))
        try:
            await _receive(ws, call, visit)
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
    finally:
        unsubscribe()


async def _send(ws: web.WebSocketResponse, queue: asyncio.Queue) -> None:
    while True:
        data = await queue.get()
        await ws.send_json(data, dumps=_dumps)
        if data["type"] == "ended":
            await ws.close(code=1000, message=b"call ended")
            return


async def _receive(ws: web.WebSocketResponse, call, visit) -> None:
    async for msg in ws:
        if msg.type != WSMsgType.TEXT or len(msg.data) > MAX_MESSAGE:
            if msg.type == WSMsgType.TEXT:
                await ws.send_json({"type": "refused", "why": "too-large"})
            continue
        try:
            data = json.loads(msg.data)
        except ValueError:
            await ws.send_json({"type": "refused", "why": "not-json"})
            continue
        if not isinstance(data, dict) or data.get("csrf") != visit.csrf:
            await ws.send_json({"type": "refused", "why": "csrf"})
            continue
        kind, value = data.get("type"), str(data.get("value", ""))
        ok = call.tap(value) if kind == "tap" else call.enter_keys(value) if kind == "keys" else False
        await ws.send_json({"type": "ack" if ok else "refused", "for": kind, **({} if ok else {"why": "bad-input"})})


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)
