"""Live caller audio for ARI calls. The caller stays outside any bridge (inside one, its audio
stops flowing while a prompt plays); a snoop channel (`spy=in`: only the caller's voice) and an
AudioSocket channel to our server are put in a mixing bridge of their own:

    caller ──snoop(spy=in)──┐
                            ├─ mixing bridge ── AudioSocket/<us>/<uuid>/c(slin16) ──> controller
Both helper channels enter our Stasis app with the argument `ivr-media`, so the controller
does not take them for calls; their ids are chosen here, before they exist, so their
StasisStart (which may come before the REST answer) can be awaited without a race.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from ivr.telephony.ari_client import AriError

_LOGGER = logging.getLogger(__name__)
MEDIA_ARG = "ivr-media"
START_TIMEOUT = 3.0


class AriAudioTap:
    def __init__(self, client, server, channel_id: str, started: "MediaStarts") -> None:
        self._client = client
        self._server = server
        self._channel_id = channel_id
        self._starts = started
        self._sid = None
        self._snoop = f"snoop-{uuid.uuid4().hex[:20]}"
        self._media = f"media-{uuid.uuid4().hex[:20]}"
        self._bridge: str | None = None

    async def open(self, sink) -> bool:
        """Start streaming the caller's voice to `sink`; False (and nothing left behind) if not."""
        self._sid = self._server.register(sink)
        app = self._client.app
        snoop_up, media_up = self._starts.expect(self._snoop), self._starts.expect(self._media)
        try:
            await self._client.post(f"/channels/{self._channel_id}/snoop",
                                    params={"app": app, "appArgs": MEDIA_ARG, "spy": "in",
                                            "snoopId": self._snoop})
            endpoint = f"AudioSocket/{self._server.host}:{self._server.port}/{self._sid}/c(slin16)"
            await self._client.post("/channels", params={"endpoint": endpoint, "app": app,
                                                          "appArgs": MEDIA_ARG, "channelId": self._media})
            async with asyncio.timeout(START_TIMEOUT):
                await asyncio.gather(snoop_up, media_up)  # addChannel before StasisStart gets a 422
            bridge = await self._client.post("/bridges", params={"type": "mixing"})
            self._bridge = bridge["id"]
            await self._client.post(f"/bridges/{self._bridge}/addChannel",
                                    params={"channel": f"{self._snoop},{self._media}"})
            if not await self._server.wait_connected(self._sid, START_TIMEOUT):
                raise AriError("Asterisk did not connect the AudioSocket")
            return True
        except (AriError, TimeoutError, KeyError, TypeError) as exc:
            _LOGGER.warning("audio tap for channel %s not started: %s", self._channel_id, exc)
            await self.close()
            return False
        except asyncio.CancelledError:  # the call ended while the tap was being set up
            await self.close()
            raise
        finally:
            self._starts.forget(self._snoop, self._media)

    async def close(self) -> None:
        if self._sid is None:
            return
        self._server.drop(self._sid)  # Asterisk hangs up the AudioSocket channel
        self._sid = None
        for path in (f"/channels/{self._snoop}", f"/channels/{self._media}",
                     *([f"/bridges/{self._bridge}"] if self._bridge else [])):
            try:
                await self._client.delete(path, timeout=2.0)
            except AriError:
                pass  # already gone with the call


class MediaStarts:
    """StasisStart of helper channels, by id, for taps waiting on them."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future] = {}

    def expect(self, channel_id: str) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._waiting[channel_id] = future
        return future

    def started(self, channel_id: str) -> None:
        future = self._waiting.get(channel_id)
        if future is not None and not future.done():
            future.set_result(True)

    def forget(self, *channel_ids: str) -> None:
        for cid in channel_ids:
            future = self._waiting.pop(cid, None)
            if future is not None and not future.done():
                future.cancel()
