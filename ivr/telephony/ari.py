"""ARI controller: the Stasis app that runs each call through the scene engine.

`AriChannel` implements the engine's Channel Protocol with ARI: `POST /channels/{id}/play/{pid}`
(stopped with `DELETE /playbacks/{pid}` when a key barges in), DTMF from the event websocket,
channel variables. Like the FastAGI controller, a transfer or hangup sets IVR_ACTION (and
IVR_QUEUE, IVR_REASON, IVR_PRIORITY, IVR_CONTEXT) and `continue`s the channel to the dialplan,
which queues or hangs up; a call the controller gives up on (an engine crash, `ivr down`) is
continued with IVR_ACTION empty, and the dialplan apologises and queues it.

Events go to the call they belong to (per channel id). When the websocket drops, the client
reconnects and `_resync` re-adopts: `GET /channels` lists the channels still in our Stasis app;
one this process is running keeps running (its waits see the new events), one it is not
running gets a call started for it, and a running one that is no longer listed hung up while we
were away. Asterisk does not replay missed events: a key pressed while disconnected is lost, and
the step's own timeout and retries cover that.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ivr.errors import CallerHangup
from ivr.flow.channel import TIMEOUT, CallerInput, ListenSpec, PromptOut
from ivr.telephony.ari_client import AriClient, AriError
from ivr.telephony.ari_media import MEDIA_ARG, AriAudioTap, MediaStarts
from ivr.telephony.call_ear import CallEar
from ivr.telephony.admin import mirror_call_state, transfer_variables
from ivr.telephony.sanitize import agi_value, caller_id

if TYPE_CHECKING:
    from ivr.app import Hotline

_LOGGER = logging.getLogger(__name__)
GONE_EVENTS = ("StasisEnd", "ChannelDestroyed", "ChannelHangupRequest")
STOP_TIMEOUT = 2.0  # DELETE /playbacks: the caller is waiting for the next prompt
PLAY_SLACK = 15.0  # a prompt's PlaybackFinished is awaited its length plus this
PLAY_MAX = 600.0  # ... or this when the length is unknown
LEAVE_TIMEOUT = 5.0  # after continue: wait this long for StasisEnd before forgetting the id
CONNECT_WAIT = 15.0  # start(): the first websocket connection
_BYTES_PER_SECOND = {".sln16": 32000, ".wav": 16000, ".sln": 16000, ".ulaw": 8000, ".alaw": 8000}


class AriChannel:
    """The Channel Protocol over one channel in our Stasis app."""

    def __init__(self, client: AriClient, hotline: "Hotline", data: dict,
                 media: MediaStarts | None = None) -> None:
        self._client = client
        self._media = media or MediaStarts()
        self._hotline = hotline
        self.id: str = data["id"]
        self.name: str = data.get("name", "")
        self._loop = asyncio.get_running_loop()
        self._started = self._loop.time()
        self._keys: list[str] = []
        self._injected: list[CallerInput] = []  # taps and keys from the visual page
        self._changed = asyncio.Event()
        self._finished: set[str] = set()
        self._playing: str | None = None
        self._posting: str | None = None  # a play request on its way (not yet answered)
        self._vars: dict[str, str] = {}  # admin variables waiting for the next command
        self.gone = False  # hung up, or left our Stasis app
        self.released = False  # we continued it to the dialplan
        self.first_audio: float | None = None  # seconds from StasisStart to the first PlaybackStarted
        self.task: asyncio.Task | None = None
        self.ear = CallEar(hotline, self.name, self._tap, on_barge=self._on_barge,
                           on_change=self._changed.set)
        if getattr(hotline, "audio_server", None) is None:
            self.ear.off = True
        self._barge = False  # the caller spoke over the current prompt

    def clock(self) -> float:
        return self._loop.time() - self._started

    # -- events (synchronous, from the websocket reader) ---------------------------------------
    def feed(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "ChannelDtmfReceived":
            digit = str(event.get("digit", ""))
            if len(digit) == 1 and digit in "0123456789*#ABCD":
                self._keys.append(digit)
        elif kind == "PlaybackStarted":
            if self.first_audio is None:
                self.first_audio = self.clock()
            self.ear.replying()
        elif kind == "PlaybackFinished":
            self._finished.add((event.get("playback") or {}).get("id", ""))
        elif kind in GONE_EVENTS:
            self.gone = True
        else:
            return
        self._changed.set()

    async def _wait(self, ready: Callable[[], bool], timeout: float) -> bool:
        """Wait until ready() (re-checked after every event of this channel), at most timeout."""
        deadline = self._loop.time() + timeout
        while not ready():
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                return False
            self._changed.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._changed.wait()
            except TimeoutError:
                return ready()
        return True

    def _check(self) -> None:
        if self.gone:
            raise CallerHangup()

    def inject(self, inp: CallerInput) -> None:
        """An input from the visual page: it stops an interruptible prompt at once."""
        self._injected.append(inp)
        self._changed.set()

    def _take(self) -> CallerInput:
        if self._injected:
            return self._injected.pop(0)
        keys, self._keys = "".join(self._keys), []
        return CallerInput("dtmf", keys)

    async def _rest(self, method: str, path: str, **kw):
        """A REST call on this channel; a channel Asterisk no longer has in our app -> CallerHangup."""
        self._check()
        try:
            return await self._client.request(method, f"/channels/{self.id}{path}", **kw)
        except AriError as exc:
            if exc.gone:
                self.gone = True
                raise CallerHangup() from None
            raise

    # -- the Channel Protocol ----------------------------------------------------------------
    async def play(self, prompt: PromptOut) -> CallerInput | None:
        parts = self._hotline.prompt_parts(prompt)
        try:
            return await self._play_prompt(prompt, parts)
        finally:
            await parts.aclose()

    async def _play_prompt(self, prompt: PromptOut, parts) -> CallerInput | None:
        path = await anext(parts)
        self._check()
        barge = prompt.barge_in
        if barge and (self._keys or self._injected):  # keyed or tapped ahead: no need to hear it
            return self._take()
        expect = prompt.expect
        ear = await self.ear.get(expect)
        if ear is not None:
            ear.clear()
            ear.prompt(barge=barge, lang=expect.lang or prompt.lang, hints=expect.hints,
                       detect=expect.detect)
        self._barge = False
        if ear is not None and ear.barged_at is not None:  # already talking: they don't need it
            try:
                return self.ear.heard(await ear.result(timeout=0))
            finally:
                ear.idle()
        try:
            return await self._play(path, parts, barge, ear)
        finally:
            if ear is not None:
                ear.idle()

    async def _play(self, path: str | None, parts, barge: bool, ear) -> CallerInput | None:
        """Play the parts one after another until the last, a hangup, or an interruption."""
        def interrupted() -> bool:
            return self.gone or self._barge or (barge and bool(self._keys or self._injected))

        stopped = None
        while path is not None:
            pid = uuid.uuid4().hex
            self.show("IVR_PLAYBACK", pid)  # so a controller that re-adopts the call can stop it
            await self._flush_vars()
            self._posting = pid  # sent: a release() meanwhile must stop it too
            try:
                await self._rest("POST", f"/play/{pid}", params={"media": f"sound:{path}"})
            except AriError as exc:
                _LOGGER.error("playing %s on %s failed: %s", path, self.name, exc)
                return None
            finally:
                self._posting = None
            # it exists in Asterisk now: a resync may look it up, and a release() stops it first (a
            # cancelled play leaves it set). Cleared once it has finished or been stopped.
            self._playing = pid
            done = await self._wait(lambda: pid in self._finished or interrupted(), self._play_limit(path))
            self._check()
            if pid not in self._finished:
                if not done:
                    _LOGGER.warning("no PlaybackFinished for %s on %s; stopping it", pid, self.name)
                await self._stop(pid)
                stopped = time.monotonic()
            self._playing = None
            self._finished.discard(pid)
            if stopped is not None or interrupted():
                break
            path = await anext(parts, None)
            self._check()
            if interrupted():  # while the next sentence was rendering
                break
        if not barge:  # keys during a prompt that may not be interrupted are dropped, as in AGI
            self._keys.clear()
            return None
        if self._keys or self._injected:
            return self._take()
        if ear is not None and ear.barged_at is not None:  # spoken over: those words are the answer
            self.ear.barged(stopped)
            return self.ear.heard(await ear.result(timeout=0))
        return None

    async def _stop(self, pid: str) -> None:
        try:
            await self._client.delete(f"/playbacks/{pid}", timeout=STOP_TIMEOUT)
        except AriError as exc:
            if not exc.gone:  # 404: it had just finished
                _LOGGER.warning("stopping playback %s on %s failed: %s", pid, self.name, exc)

    def _play_limit(self, path: str) -> float:
        root = getattr(self._hotline, "asterisk_root", None)
        if root is not None:
            base = Path(root) / path.lstrip("/")
            for ext, rate in _BYTES_PER_SECOND.items():
                try:
                    return base.with_name(base.name + ext).stat().st_size / rate + PLAY_SLACK
                except OSError:
                    continue
        return PLAY_MAX

    async def listen(self, spec: ListenSpec) -> CallerInput:
        self._check()
        await self._flush_vars()
        ear = await self.ear.get(spec)
        if ear is not None:
            ear.listen(lang=spec.lang, hints=spec.hints, detect=spec.detect)
            try:
                return await self._listen_with(ear, spec)
            finally:
                ear.idle()
        if not spec.dtmf:  # speech is off or unavailable: the step's no-input policy follows
            await self._wait(lambda: self.gone or bool(self._injected), max(spec.timeout, 0.1))
            self._check()
            self._keys.clear()
            return self._take() if self._injected else TIMEOUT
        await self._wait(lambda: self.gone or bool(self._keys or self._injected), max(spec.timeout, 0.0))
        if self._keys or self._injected:  # keys that came with the hangup still count for nothing
            self._check()
            return self._take()
        self._check()
        return TIMEOUT

    async def _listen_with(self, ear, spec: ListenSpec) -> CallerInput:
        deadline = self._loop.time() + max(spec.timeout, 0.0)
        while True:
            await self._wait(lambda: self.gone or bool(self._keys or self._injected) or ear.ready() or ear.busy,
                             max(deadline - self._loop.time(), 0.0))
            self._check()
            if self._injected:
                return self._take()
            if self._keys:
                if spec.dtmf:
                    return self._take()
                self._keys.clear()
            if ear.ready() or ear.busy:  # speech under way: wait for its words
                heard = await ear.result(timeout=max(deadline - self._loop.time(), 0.0))
                self._check()
                if heard is not None:
                    return self.ear.heard(heard)
            if self._loop.time() >= deadline:
                return TIMEOUT

    # -- speech --------------------------------------------------------------------------------
    async def _tap(self, listener):
        tap = AriAudioTap(self._client, self._hotline.audio_server, self.id, self._media)
        return tap if await tap.open(listener) else None

    def _on_barge(self) -> None:
        self._barge = True  # play() sees it at once and stops the prompt
        self._changed.set()

    @property
    def on_timing(self):
        return self.ear.on_timing

    @on_timing.setter
    def on_timing(self, publish) -> None:  # the Hotline publishes Timing events through it
        self.ear.on_timing = publish

    async def transfer(self, queue: str, context: dict) -> None:
        await self.ear.close()
        await self._set_vars(transfer_variables(queue, context))
        await self._set_vars({"IVR_ACTION": "transfer"})
        await self.release()

    async def hangup(self) -> None:
        await self.ear.close()
        await self._set_vars({"IVR_ACTION": "hangup"})
        await self.release()

    async def _set_vars(self, values: dict[str, str]) -> None:
        await self._flush_vars()
        await asyncio.gather(*(self._rest("POST", "/variable", params={"variable": name,
                                                                       "value": agi_value(value, 1000)})
                               for name, value in values.items()))

    async def release(self) -> None:
        """Return the channel to the dialplan (`ivr-ari,start,2`), which reads IVR_ACTION."""
        pid = self._playing or self._posting
        if pid is not None:  # a play was interrupted (shutdown): `continue` would
            self._playing = self._posting = None  # wait behind that prompt
            await self._stop(pid)
        await self._rest("POST", "/continue")
        self.released = True

    # -- admin variables ---------------------------------------------------------------------
    def show(self, name: str, value: str) -> None:
        """Set a channel variable before the next play or listen (admins see it in
        `core show channel`)."""
        self._vars[name] = value

    async def _flush_vars(self) -> None:
        """Send the pending admin variables, all at once, and wait for them. ARI runs a variable
        change on the channel's Stasis command queue, behind a running playback: sent while a
        prompt plays it would wait for its end, so they go just before the next command."""
        if not self._vars or self.gone or self.released:
            return
        pending, self._vars = self._vars, {}
        results = await asyncio.gather(
            *(self._client.post(f"/channels/{self.id}/variable",
                                params={"variable": name, "value": agi_value(value)})
              for name, value in pending.items()), return_exceptions=True)
        for name, result in zip(pending, results):
            if isinstance(result, Exception):
                _LOGGER.debug("setting %s on %s failed: %s", name, self.name, result)

    async def resync(self) -> None:
        """After a reconnect: a playback that ended while we were away is finished."""
        pid = self._playing
        if pid is None:
            return
        try:
            await self._client.get(f"/playbacks/{pid}")
        except AriError as exc:
            if exc.gone and pid == self._playing:
                self._finished.add(pid)
                self._changed.set()

    async def stop_orphan_playback(self) -> None:
        """A re-adopted channel may still be playing the previous controller's prompt: stop it,
        or our first prompt would queue behind it."""
        try:
            found = await self._client.get(f"/channels/{self.id}/variable",
                                           params={"variable": "IVR_PLAYBACK"})
        except AriError:
            return
        pid = str((found or {}).get("value") or "")
        if pid:
            await self._stop(pid)

    async def wait_gone(self, timeout: float) -> None:
        await self._wait(lambda: self.gone, timeout)

class AriController:
    """The Stasis app: one call per channel entering it, events routed by channel id."""

    def __init__(self, hotline: "Hotline", host: str, port: int, user: str, password: str,
                 app: str, *, client: AriClient | None = None) -> None:
        self.hotline = hotline
        self.app = app
        self.client = client or AriClient(host, port, user, password, app)
        self.calls: dict[str, AriChannel] = {}  # channel id -> the call running on it
        self.first_audio: collections.deque[float] = collections.deque(maxlen=1000)
        self.adopted = 0  # calls started by a resync rather than a StasisStart
        self.media = MediaStarts()  # our own snoop/AudioSocket helper channels
        self._events: asyncio.Task | None = None
        self._connected = asyncio.Event()
        self._stopping = False

    async def start(self) -> None:
        self._events = asyncio.create_task(self.client.run_events(self._on_event, self._resync),
                                           name="ari-events")
        try:
            async with asyncio.timeout(CONNECT_WAIT):
                await self._connected.wait()
        except TimeoutError:
            await self.stop()
            raise AriError(f"ARI at {self.client.base} did not accept the events websocket within "
                           f"{CONNECT_WAIT:.0f} s (is res_ari loaded, is the ARI password right?)") from None
        _LOGGER.info("ARI app %s registered at %s", self.app, self.client.base)

    async def stop(self) -> None:
        """Hand every running call back to the dialplan, close the websocket and the session."""
        self._stopping = True
        tasks = [c.task for c in self.calls.values() if c.task is not None and not c.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT * 2)
        await self.client.close()
        if self._events is not None:
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await asyncio.gather(self._events, return_exceptions=True)
            except TimeoutError:
                self._events.cancel()
                await asyncio.gather(self._events, return_exceptions=True)

    # -- events --------------------------------------------------------------------------------
    def _on_event(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "StasisStart":
            args = event.get("args") or []
            if MEDIA_ARG in args:  # a call's audio tap, not a call
                self.media.started((event.get("channel") or {}).get("id", ""))
                return
            self._begin(event.get("channel") or {}, args)
            return
        if kind == "ApplicationReplaced":
            _LOGGER.error("another client took over the ARI app %s", self.app)
            return
        if kind and kind.startswith("Playback"):
            target = (event.get("playback") or {}).get("target_uri", "")
            channel_id = target.split(":", 1)[1] if target.startswith("channel:") else ""
        else:
            channel_id = (event.get("channel") or {}).get("id", "")
        call = self.calls.get(channel_id)
        if call is not None:
            call.feed(event)

    def _begin(self, data: dict, args: list[str], *, adopted: bool = False) -> None:
        channel_id = data.get("id")
        if not channel_id or self._stopping:
            return
        running = self.calls.get(channel_id)
        if running is not None and running.task is not None and not running.task.done() \
                and not running.released:
            return  # already ours: never run a call twice
        if running is not None:
            running.gone = True  # an earlier session of this channel: let its task finish
        channel = AriChannel(self.client, self.hotline, data, self.media)
        self.calls[channel_id] = channel
        caller = caller_id((data.get("caller") or {}).get("number", ""))
        lang = next((a.split("=", 1)[1] for a in args if str(a).startswith("lang=")), None)
        if adopted:
            self.adopted += 1
            _LOGGER.warning("re-adopting %s (in Stasis, no call running for it)", channel.name)
        channel.task = asyncio.create_task(self._run(channel, caller, lang, adopted),
                                           name=f"ari-call-{channel_id}")

    async def _run(self, channel: AriChannel, caller: str, lang: str | None, adopted: bool) -> None:
        on_event = mirror_call_state(channel.show)

        try:
            if adopted:
                await channel.stop_orphan_playback()
            await self.hotline.run_call(channel, caller, on_event=on_event,
                                        channel_name=channel.name, lang=lang)
        except asyncio.CancelledError:
            _LOGGER.warning("call on %s interrupted by shutdown; the dialplan takes it over",
                            channel.name)
        except Exception:
            _LOGGER.exception("ARI call on %s failed", channel.name)
        finally:
            await self._finish(channel, adopted)

    async def _finish(self, channel: AriChannel, adopted: bool) -> None:
        try:
            await channel.ear.close()
            if channel.first_audio is not None and not adopted:
                self.first_audio.append(channel.first_audio)
                _LOGGER.info("call on %s: first audio %.0f ms after StasisStart", channel.name,
                             channel.first_audio * 1000)
            if not channel.released and not channel.gone:
                # the engine gave up without a transfer or hangup: IVR_ACTION is empty, so the
                # dialplan apologises and queues the caller. Never a caller stuck in silence.
                try:
                    await channel.release()
                except (CallerHangup, AriError) as exc:
                    _LOGGER.warning("could not return %s to the dialplan: %s", channel.name, exc)
            if not self._stopping and not channel.gone:
                await channel.wait_gone(LEAVE_TIMEOUT)  # until then a resync must not re-adopt it
        finally:
            if self.calls.get(channel.id) is channel:
                del self.calls[channel.id]

    async def _resync(self) -> None:
        """After every (re)connection: adopt channels left in our app, settle the running ones."""
        self._connected.set()
        try:
            listed = await self.client.get("/channels") or []
        except AriError as exc:
            _LOGGER.error("cannot list channels after connecting: %s", exc)
            return
        present = set()
        for data in listed:
            present.add(data.get("id"))
            plan = data.get("dialplan") or {}
            app, _, rest = str(plan.get("app_data", "")).partition(",")
            if plan.get("app_name") == "Stasis" and app.strip() == self.app \
                    and data.get("id") not in self.calls and MEDIA_ARG not in rest:
                self._begin(data, [a for a in rest.split(",") if a], adopted=True)
        for channel_id, call in list(self.calls.items()):
            if channel_id not in present:
                call.feed({"type": "ChannelDestroyed"})  # it hung up while we were away
            else:
                await call.resync()
