"""ARI plumbing: one pooled aiohttp session for REST, and the event websocket with reconnects.

Only transport here; what the events mean for a call lives in ivr.telephony.ari.
- REST: every request has a deadline; connections are pooled below Asterisk's HTTP
  `sessionlimit` (dialplans/http.conf), and the Authorization header is built by hand
  (aiohttp 3.14 deprecates BasicAuth).
- Events: `ws://host:port/ari/events?app=APP&subscribeAll=false`. When the websocket drops,
  it reconnects with a capped backoff and calls `on_connected` again, so the controller can
  re-adopt the channels still in Stasis (Asterisk does not replay missed events).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any, Awaitable, Callable

import aiohttp

from ivr.errors import IvrError

_LOGGER = logging.getLogger(__name__)
POOL_LIMIT = 100  # REST connections; Asterisk's http.conf sessionlimit is 400
REQUEST_TIMEOUT = 5.0
CONNECT_TIMEOUT = 5.0
HEARTBEAT = 10.0  # websocket pings: a half-open connection is noticed within ~2 heartbeats
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 2.0


class AriError(IvrError):
    """An ARI request failed. `status` is the HTTP status (0: no answer, a timeout or a
    connection error)."""

    code = "ari-error"

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status

    @property
    def gone(self) -> bool:
        """404 (no such channel/playback) or 409/422 (the channel left our Stasis app)."""
        return self.status in (404, 409, 422)


class AriClient:
    def __init__(self, host: str, port: int, user: str, password: str, app: str, *,
                 pool: int = POOL_LIMIT, timeout: float = REQUEST_TIMEOUT) -> None:
        self.base = f"http://{host}:{port}/ari"
        self.app = app
        self._auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        self._pool, self._timeout = pool, timeout
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._closing = False
        self.connects = 0  # successful websocket connections (1 + reconnects)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool, limit_per_host=self._pool),
                headers={"Authorization": self._auth},
                # no session-wide total: it would also cut the long-lived event websocket;
                # every REST request has its own deadline in request()
                timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT))
        return self._session

    # -- REST ----------------------------------------------------------------------------------
    async def request(self, method: str, path: str, *, params: dict | None = None,
                      json_body: Any = None, timeout: float | None = None) -> Any:
        """One REST call; returns the decoded JSON body (None when empty). Raises AriError."""
        url = self.base + path
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        try:
            async with asyncio.timeout(timeout or self._timeout):
                async with self.session.request(method, url, params=query, json=json_body) as resp:
                    body = await resp.read()
                    if resp.status >= 400:
                        detail = body[:200].decode("utf-8", "replace")
                        raise AriError(f"{method} {path}: {resp.status} {detail}", resp.status)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise AriError(f"{method} {path}: {type(exc).__name__} {exc}") from None
        if not body:
            return None
        try:
            return json.loads(body)
        except ValueError:
            return None

    async def get(self, path: str, **kw) -> Any:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw) -> Any:
        return await self.request("POST", path, **kw)

    async def delete(self, path: str, **kw) -> Any:
        return await self.request("DELETE", path, **kw)

    # -- events --------------------------------------------------------------------------------
    async def run_events(self, on_event: Callable[[dict], None],
                         on_connected: Callable[[], Awaitable[None]]) -> None:
        """Receive events until close(): reconnect with backoff whenever the websocket drops.
        `on_event` runs synchronously for every event, in order; `on_connected` after every
        (re)connection, as its own task, so events keep flowing while it works."""
        url = self.base.replace("http://", "ws://", 1) + "/events"
        params = {"app": self.app, "subscribeAll": "false"}
        delay = BACKOFF_FIRST
        resync: asyncio.Task | None = None
        while not self._closing:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    self._ws = await self.session.ws_connect(url, params=params, heartbeat=HEARTBEAT,
                                                             autoping=True, max_msg_size=2**22)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                if self._closing:
                    break
                _LOGGER.warning("ARI websocket %s unavailable (%s); retrying in %.1f s",
                                url, exc or type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            self.connects += 1
            delay = BACKOFF_FIRST
            _LOGGER.info("ARI websocket connected (app %s, connection %d)", self.app, self.connects)
            if resync is not None and not resync.done():
                resync.cancel()
            resync = asyncio.create_task(_guarded(on_connected()), name="ari-resync")
            try:
                async for msg in self._ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        continue
                    try:
                        event = json.loads(msg.data)
                    except ValueError:
                        _LOGGER.warning("ARI sent a frame that is not JSON")
                        continue
                    try:
                        on_event(event)
                    except Exception:  # one bad event must not stop the others
                        _LOGGER.exception("ARI event %s failed", event.get("type"))
            except (aiohttp.ClientError, OSError) as exc:
                _LOGGER.warning("ARI websocket error: %s", exc)
            finally:
                ws, self._ws = self._ws, None
                if ws is not None and not ws.closed:
                    await ws.close()
            if not self._closing:
                _LOGGER.warning("ARI websocket dropped; reconnecting")
                await asyncio.sleep(BACKOFF_FIRST)
        if resync is not None and not resync.done():
            resync.cancel()
            await asyncio.gather(resync, return_exceptions=True)

    async def drop_events(self) -> None:
        """Close the current websocket (it reconnects): for tests and operators."""
        if self._ws is not None:
            await self._ws.close()

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _guarded(coro: Awaitable[None]) -> None:
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except Exception:
        _LOGGER.exception("ARI resync after connecting failed")
