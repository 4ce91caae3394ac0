"""The visual benchmark's pages and its ARI observer (used by tests/bench/bench_visual.py).

A page is an aiohttp client, not a browser: it opens the SMS link as a browser would (GET the
Continue page, POST it with the form's CSRF token, keep the HttpOnly visit cookie), then
follows the call over `/v/ws` and taps with the page's CSRF token. Every live message carries
`at`, the server's wall-clock time when the call published the event; the page notes its own
receive time next to it. Both run on this box, so the clocks agree.

The ARI observer is a second Stasis app (`ivrbench`) with `subscribeAll=true`: it sees every
channel's PlaybackStarted (with Asterisk's own timestamp) and the IVR_CALL_ID variable the
controller sets on each channel, so a playback can be tied to its call.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import aiohttp

from ivr.errors import IvrError

FORM_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
PAGE_CSRF = re.compile(r'data-csrf="([^"]+)"')
LONG_MENU = "This is the long menu."
SHORT_MENU = "Press 1, 2, or 9."


class PageError(IvrError):
    code = "bench-visual-page"


@dataclass
class Visit:
    """One spent link: its session (holding the visit cookie) and the page's CSRF token."""

    call_id: str
    http: aiohttp.ClientSession
    csrf: str
    base: str


async def open_visit(base: str, url: str, call_id: str) -> Visit:
    """Open an SMS link as a browser does: Continue page, POST, the cookie, then /v."""
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),  # cookies for an IP host
                                 connector=aiohttp.TCPConnector(limit=0))
    try:
        got = await http.get(url)
        found = FORM_CSRF.search(await got.text())
        if got.status != 200 or not found:
            raise PageError(f"Continue page: HTTP {got.status}")
        posted = await http.post(url, data={"csrf": found.group(1)}, headers={"Origin": base},
                                 allow_redirects=False)
        if posted.status != 303:
            raise PageError(f"spending the link: HTTP {posted.status}")
        page = await http.get(base + "/v")
        found = PAGE_CSRF.search(await page.text())
        if page.status != 200 or not found:
            raise PageError(f"/v: HTTP {page.status}")
        return Visit(call_id, http, found.group(1), base)
    except BaseException:
        await http.close()
        raise


@dataclass
class Said:
    text: str
    at: float | None  # server publish time (wall clock); None for the hello backlog
    received: float  # this page's receive time (wall clock)


class Page:
    """One websocket on a visit. Every live message's delay (receive - publish) goes to
    `sink[0]` (the benchmark swaps the list per measurement window); a driving page also
    queues its messages for the driver."""

    def __init__(self, visit: Visit, sink: list, *, driving: bool = False) -> None:
        self.visit = visit
        self.sink = sink
        self.inbox: asyncio.Queue | None = asyncio.Queue() if driving else None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.ended = False
        self.messages = 0

    async def connect(self) -> None:
        self.ws = await self.visit.http.ws_connect(self.visit.base + "/v/ws", origin=self.visit.base,
                                                   heartbeat=None, max_msg_size=2**20)
        hello = await self.ws.receive_json(timeout=10)
        if hello.get("type") != "hello":
            raise PageError(f"the feed did not say hello: {hello}")
        if self.inbox is not None:  # what happened before the page opened (no `at`: not timed)
            for data in hello["events"]:
                self.inbox.put_nowait((time.time(), data))

    async def follow(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            received = time.time()
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            self.messages += 1
            if "at" in data:
                self.sink[0].append((received - data["at"]) * 1000)
            if data.get("type") == "ended":
                self.ended = True
            if self.inbox is not None:
                self.inbox.put_nowait((received, data))
        self.ended = True
        if self.inbox is not None:
            self.inbox.put_nowait((time.time(), {"type": "closed"}))

    async def next(self, want, timeout: float) -> tuple[float, dict]:
        """The next queued message for which want(data) holds."""
        assert self.inbox is not None
        async with asyncio.timeout(timeout):
            while True:
                received, data = await self.inbox.get()
                if data.get("type") in ("closed", "ended"):
                    raise PageError(f"the call ended ({data})")
                if want(data):
                    return received, data

    async def said_ivr(self, timeout: float, prefix: str = "") -> Said:
        received, data = await self.next(lambda d: d.get("type") == "said" and d.get("who") == "ivr"
                                         and d.get("text", "").startswith(prefix), timeout)
        return Said(data["text"], data.get("at"), received)

    async def send(self, kind: str, value: str) -> float:
        assert self.ws is not None
        sent = time.time()
        await self.ws.send_json({"type": kind, "value": value, "csrf": self.visit.csrf})
        return sent

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            await self.ws.close()


class AriObserver:
    """PlaybackStarted of every channel, and which call runs on which channel."""

    def __init__(self, host: str, port: int, user: str, password: str) -> None:
        self.url = f"ws://{host}:{port}/ari/events"
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        self.channel_of: dict[str, str] = {}  # call id -> channel id
        self.started: dict[str, list[tuple[float, float]]] = defaultdict(list)  # channel -> (asterisk ts, received)
        self.connected = asyncio.Event()
        self._http: aiohttp.ClientSession | None = None

    async def run(self) -> None:
        self._http = aiohttp.ClientSession(headers={"Authorization": self.auth})
        try:
            async with self._http.ws_connect(self.url, params={"app": "ivrbench", "subscribeAll": "true"},
                                             max_msg_size=2**22) as ws:
                self.connected.set()
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        self._on(json.loads(msg.data), time.time())
        finally:
            await self._http.close()

    def _on(self, event: dict, received: float) -> None:
        kind = event.get("type")
        if kind == "ChannelVarset" and event.get("variable") == "IVR_CALL_ID":
            self.channel_of[str(event.get("value"))] = (event.get("channel") or {}).get("id", "")
        elif kind == "PlaybackStarted":
            target = (event.get("playback") or {}).get("target_uri", "")
            if target.startswith("channel:"):
                self.started[target[8:]].append((_asterisk_time(event.get("timestamp", "")), received))

    def playback_after(self, call_id: str, at: float) -> tuple[float, float] | None:
        """The first playback on the call's channel that Asterisk started at or after `at`
        (its timestamps have millisecond resolution)."""
        channel = self.channel_of.get(call_id)
        for started, received in self.started.get(channel or "", ()):
            if started >= at - 0.001:
                return started, received
        return None


def _asterisk_time(stamp: str) -> float:
    try:
        return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
    except ValueError:
        return 0.0


@dataclass
class TapSample:
    call_id: str
    menu: str  # "long": the tap lands while the menu prompt plays; "short": while the call listens
    sent: float
    reply: Said
    window: str = ""
    playback: tuple[float, float] | None = None


@dataclass
class VerifySample:
    call_id: str
    sent: float
    status: int
    verified: tuple[float, float] | None = None  # (publish, page receive) of the `verified` event
    spoken: Said | None = None
    playback: tuple[float, float] | None = None


@dataclass
class Driver:
    """Drives one call from its page: verifies once, then taps the menus until told to stop."""

    page: Page
    window: list  # [name of the current measurement window]
    rng: object
    taps: list[TapSample] = field(default_factory=list)
    verify: VerifySample | None = None
    errors: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        try:
            await self._verify()
            while True:
                menu = await self.page.said_ivr(60)
                if not menu.text.startswith((LONG_MENU, SHORT_MENU)):
                    continue
                long = menu.text.startswith(LONG_MENU)
                if self.stop.is_set():
                    await self.page.send("tap", "9")
                    await self.page.next(lambda d: False, 30)  # until the call ends
                # long menu: well inside its ~6 s prompt; short menu: after its ~1.5 s prompt
                await asyncio.sleep(self.rng.uniform(0.5, 3.0) if long else self.rng.uniform(2.5, 4.0))
                window = self.window[0]
                sent = await self.page.send("tap", self.rng.choice("12"))
                reply = await self.page.said_ivr(15, "You chose")
                self.taps.append(TapSample(self.page.visit.call_id, "long" if long else "short", sent, reply, window))
        except PageError as exc:
            if not self.stop.is_set():
                self.errors.append(str(exc))
        except TimeoutError:
            self.errors.append("timed out waiting for the call")

    async def _verify(self) -> None:
        """Verify on the page (the date of birth form) over the first long menu prompt."""
        await self.page.said_ivr(60, LONG_MENU)
        await asyncio.sleep(self.rng.uniform(0.5, 2.0))
        visit = self.page.visit
        sent = time.time()
        answer = await visit.http.post(visit.base + "/v/verify", allow_redirects=False, headers={"Origin": visit.base},
                                       data={"csrf": visit.csrf, "method": "dob", "answer": "1970-01-01"})
        sample = VerifySample(visit.call_id, sent, answer.status)
        self.verify = sample
        if answer.status != 303 or "verified_now" not in answer.headers.get("Location", ""):
            self.errors.append(f"verification refused: HTTP {answer.status} {answer.headers.get('Location')}")
            return
        received, data = await self.page.next(lambda d: d.get("type") == "verified", 10)
        sample.verified = (data["at"], received)
        sample.spoken = await self.page.said_ivr(10, "Thank you, you are verified")
