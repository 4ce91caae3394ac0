"""The visual feed's `at` field: live messages carry the server's wall-clock publish time (what
`ivr bench visual` measures the event-to-page delay from); the hello backlog does not."""

from __future__ import annotations

import asyncio
import time

from ivr import events as ev
from ivr.web.visual_feed import follow


class FakeCall:
    verified = False

    def __init__(self) -> None:
        self.stream = ev.EventStream()

    @property
    def history(self):
        return list(self.stream.history)

    def subscribe(self, subscriber):
        return self.stream.subscribe(subscriber)


class FakeVisit:
    lang = "en"
    csrf = "token"


class FakeSocket:
    """Collects what the feed sends; the page sends nothing until it closes."""

    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.closed = asyncio.Event()

    async def send_json(self, data, dumps=None) -> None:
        self.sent.append(data)

    async def close(self, **kw) -> None:
        self.closed.set()

    def __aiter__(self):
        return self

    async def __anext__(self):
        await self.closed.wait()
        raise StopAsyncIteration


async def _wait_for(predicate, timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_live_messages_carry_the_publish_time_and_the_backlog_does_not():
    call, ws = FakeCall(), FakeSocket()
    call.stream.publish(ev.Prompt(t=0.0, text="Welcome.", lang="en"))
    task = asyncio.create_task(follow(ws, call, FakeVisit(), 0))
    await _wait_for(lambda: ws.sent)
    hello = ws.sent[0]
    assert hello["type"] == "hello" and [e["text"] for e in hello["events"]] == ["Welcome."]
    assert all("at" not in e for e in hello["events"])
    before = time.time()
    call.stream.publish(ev.Prompt(t=1.5, text="Press 1.", lang="en"))
    after = time.time()
    await _wait_for(lambda: len(ws.sent) > 1)
    said = ws.sent[1]
    assert said["text"] == "Press 1." and said["t"] == 1.5
    assert before - 0.001 <= said["at"] <= after + 0.001
    await ws.close()
    await asyncio.wait_for(task, 2)
