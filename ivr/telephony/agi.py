"""FastAGI controller (panoramisk): one AGI session per call, driving the scene engine.

`AgiChannel` implements the engine's Channel Protocol with AGI commands: STREAM FILE (with
escape digits for barge-in), WAIT FOR DIGIT, SET VARIABLE. A transfer or hangup sets
IVR_ACTION and returns the channel to the dialplan, which queues or hangs up; a controller that
dies mid-call leaves IVR_ACTION empty, and the dialplan falls back to an apology and the queue.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from typing import TYPE_CHECKING

from ivr.errors import CallerHangup
from ivr.flow.channel import TIMEOUT, CallerInput, ListenSpec, PromptOut
from ivr.telephony.admin import CONTEXT_LIMIT, mirror_call_state, transfer_variables
from ivr.telephony.audio_fork import AgiAudioFork
from ivr.telephony.call_ear import CallEar
from ivr.telephony.sanitize import agi_value, caller_id

if TYPE_CHECKING:
    from ivr.app import Hotline

_LOGGER = logging.getLogger(__name__)
BARGE_KEYS = "0123456789*#"
HEADER_TIMEOUT = 5.0
# A command has no time limit of its own (a STREAM FILE of a long prompt takes as long as it
# plays, and a timer per command is a measurable share of the controller's CPU per call); a
# peer that vanished without closing the connection is found by TCP keepalive instead.
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_PROBES = 60, 10, 3
DIGIT_SLICE_MS = 250  # while listening for speech too, keys are polled in slices this long
DIGIT_POLL_MS = 60  # ... and this long while the caller's words are being recognised
# values that can go in one SET VARIABLE ARRAY(...): ARRAY() splits its value on commas and
# counts brackets and quotes (and may trim spaces), so a value with any of those is set on
# its own
_ARRAY_SAFE = re.compile(r"[\w.:+@/=-]*")


class AgiChannel:
    """The Channel Protocol over one FastAGI connection. Commands go one at a time."""

    def __init__(self, request, hotline: "Hotline") -> None:
        self._request = request
        self._hotline = hotline
        self._started = time.monotonic()
        self._lock = asyncio.Lock()
        self._vars: dict[str, str] = {}
        self.hung_up = False
        self.name = request.headers.get("agi_channel", "")
        self.uniqueid = request.headers.get("agi_uniqueid", "")
        self._playing = False
        self._barge_ok = False  # the prompt playing may be interrupted
        self._injected: list[CallerInput] = []  # taps and keys from the visual page
        self.taps = False  # a page is open on this call: waits are sliced so its taps count
        self.ear = CallEar(hotline, self.name, self._fork, on_barge=self._on_barge)
        if hotline.ami is None or getattr(hotline, "audio_server", None) is None:
            self.ear.off = True

    async def answered_at(self) -> float | None:
        """When the dialplan answered (IVR_T0, epoch seconds, the AGI script's first argument),
        for answer-to-first-audio."""
        try:
            return float(self._request.headers.get("agi_arg_1", ""))
        except ValueError:
            return None

    def clock(self) -> float:
        return time.monotonic() - self._started

    async def command(self, line: str) -> dict:
        """Send one AGI command; raise CallerHangup when the channel is gone."""
        if self.hung_up:
            raise CallerHangup()
        async with self._lock:
            await self._flush_vars()
            return await self._send(line)

    async def _send(self, line: str) -> dict:
        try:
            result = await self._request.send_command(line)
        except (ConnectionError, ValueError, asyncio.IncompleteReadError, OSError):
            self.hung_up = True  # the socket closed: Asterisk dropped the channel
            raise CallerHangup() from None
        if result.get("error") == "AGIResultHangup" or result.get("status_code") == 511:
            self.hung_up = True
            raise CallerHangup()
        return result

    async def _flush_vars(self) -> None:
        """The queued variables in as few round trips as possible: the plain ones in a single
        SET VARIABLE ARRAY(...) (which, unlike EXEC MSet, leaves AGI as the channel's application
        in `core show channels`); a value ARRAY() would split (a comma, a bracket) goes alone,
        before them. IVR_ACTION, queued last and always plain, is therefore set last."""
        if not self._vars:
            return
        queued = [(name, agi_value(value, CONTEXT_LIMIT)) for name, value in self._vars.items()]
        self._vars.clear()
        plain: list[tuple[str, str]] = []
        for name, value in queued:
            if _ARRAY_SAFE.fullmatch(value):
                plain.append((name, value))
            else:
                await self._send(f'SET VARIABLE {name} "{value}"')
        if len(plain) == 1:
            await self._send(f'SET VARIABLE {plain[0][0]} "{plain[0][1]}"')
        elif plain:
            names, values = zip(*plain)
            await self._send(f'SET VARIABLE ARRAY({",".join(names)}) "{",".join(values)}"')

    def show(self, name: str, value: str) -> None:
        """Set a channel variable before the next command (admins see it in `core show channel`)."""
        self._vars.pop(name, None)  # queued again: it goes after the others
        self._vars[name] = value

    def inject(self, inp: CallerInput) -> None:
        """An input from the visual page. A prompt that may be interrupted stops at once (AMI
        ControlPlayback); otherwise it counts at the next wait, which is sliced for it."""
        self._injected.append(inp)
        self.taps = True
        if self._playing and self._barge_ok:
            self._stop_prompt()

    def _stop_prompt(self) -> None:
        if self.ear.stream is not None:
            self.ear.stream.stop_prompt()
        elif self._hotline.ami is not None:
            self._hotline.spawn(self._hotline.ami.action(
                {"Action": "ControlPlayback", "Channel": self.name, "Control": "stop"}, timeout=2))

    def _tap(self) -> CallerInput | None:
        return self._injected.pop(0) if self._injected else None

    async def play(self, prompt: PromptOut) -> CallerInput | None:
        parts = self._hotline.prompt_parts(prompt)
        try:
            return await self._play(prompt, parts)
        finally:
            await parts.aclose()

    async def _play(self, prompt: PromptOut, parts) -> CallerInput | None:
        path = await anext(parts)
        if prompt.barge_in and self._injected:  # tapped ahead: the caller doesn't have to hear it
            return self._tap()
        keys = BARGE_KEYS if prompt.barge_in else ""
        expect = prompt.expect
        ear = await self.ear.get(expect)
        if ear is not None:
            ear.clear()
            ear.prompt(barge=prompt.barge_in, lang=expect.lang or prompt.lang, hints=expect.hints,
                       detect=expect.detect)
        if ear is not None and ear.barged_at is not None:  # already talking: they don't need it
            try:
                return await self._words(ear, deadline=self.clock())
            finally:
                ear.idle()
        self.ear.replying()
        def interrupted() -> bool:
            return bool(prompt.barge_in and self._injected) or (ear is not None and ear.barged_at is not None)

        self._playing, self._barge_ok = True, prompt.barge_in
        code = 0
        try:
            while path is not None:  # one STREAM FILE per part, until the last or an interruption
                result = await self.command(f'STREAM FILE {path} "{keys}"')
                code = _result_code(result)
                if code < 0:  # AGI says -1 for a hangup mid-prompt as for a missing file
                    if self._hotline.playable(path):
                        _LOGGER.info("prompt %s stopped on %s: the caller hung up", path, self.name)
                    else:
                        _LOGGER.error("STREAM FILE %s failed on %s: no such prompt file", path, self.name)
                if code or interrupted():
                    break
                path = await anext(parts, None)
                if interrupted():  # while the next sentence was rendering
                    break
        finally:
            self._playing = False
        if code > 0:
            return CallerInput("dtmf", chr(code))
        if prompt.barge_in and self._injected:  # a tap stopped it
            if ear is not None:
                ear.idle()
            return self._tap()
        if ear is None:
            return None
        try:
            if ear.barged_at is not None:  # the caller spoke over it: their words are the answer
                self.ear.barged()
                return await self._words(ear, deadline=self.clock())
            return None
        finally:
            ear.idle()

    async def listen(self, spec: ListenSpec) -> CallerInput:
        if self._injected:
            return self._tap()
        ear = await self.ear.get(spec)
        if ear is None:
            if self.taps:
                return await self._keys_or_taps(spec)
            if not spec.dtmf:  # speech is off or unavailable: the step's no-input policy follows
                await self.command(f"EXEC Wait {max(spec.timeout, 0.1):.1f}")
                return TIMEOUT
            result = await self.command(f"WAIT FOR DIGIT {int(spec.timeout * 1000)}")
            code = _result_code(result)
            return CallerInput("dtmf", chr(code)) if code > 0 else TIMEOUT
        ear.listen(lang=spec.lang, hints=spec.hints, detect=spec.detect)
        try:
            return await self._words(ear, deadline=self.clock() + spec.timeout, keys=spec.dtmf) or TIMEOUT
        finally:
            ear.idle()

    async def _keys_or_taps(self, spec: ListenSpec) -> CallerInput:
        """WAIT FOR DIGIT in slices, so that a tap on the page counts within a slice."""
        deadline = self.clock() + spec.timeout
        while True:
            tap = self._tap()
            if tap is not None:
                return tap
            left = deadline - self.clock()
            if left <= 0:
                return TIMEOUT
            result = await self.command(f"WAIT FOR DIGIT {max(int(min(left * 1000, DIGIT_SLICE_MS)), 1)}")
            code = _result_code(result)
            if code > 0 and spec.dtmf:
                return CallerInput("dtmf", chr(code))

    async def _words(self, ear, *, deadline: float, keys: bool = False) -> CallerInput | None:
        """The caller's next words (or key, with `keys`); None when nothing began by `deadline`.
        WAIT FOR DIGIT cannot be interrupted, so it is sent in short slices; they also notice a
        hangup, which a controller only hears about when it sends a command."""
        while True:
            tap = self._tap()
            if tap is not None:
                return tap
            heard = ear.take()
            if heard is not None:
                return self.ear.heard(heard)
            busy = ear.busy  # speech under way: its words are coming
            if not busy and (self.clock() >= deadline or ear.closed):
                return None
            slice_ms = DIGIT_POLL_MS if busy else min(max(deadline - self.clock(), 0.0) * 1000, DIGIT_SLICE_MS)
            result = await self.command(f"WAIT FOR DIGIT {max(int(slice_ms), 1)}")
            code = _result_code(result)
            if code > 0 and keys:
                return CallerInput("dtmf", chr(code))

    # -- speech --------------------------------------------------------------------------------
    async def _fork(self, listener):
        fork = AgiAudioFork(self._hotline.ami, self._hotline.audio_server, self.name)
        return fork if await fork.open(listener) else None

    def _on_barge(self) -> None:
        if self._playing and self.ear.stream is not None:
            self.ear.stream.stop_prompt()

    @property
    def on_timing(self):
        return self.ear.on_timing

    @on_timing.setter
    def on_timing(self, publish) -> None:  # the Hotline publishes Timing events through it
        self.ear.on_timing = publish

    async def transfer(self, queue: str, context: dict) -> None:
        await self.ear.close()
        for name, value in transfer_variables(queue, context).items():
            self.show(name, value)
        await self._hand_back("transfer")

    async def hangup(self) -> None:
        await self.ear.close()
        await self._hand_back("hangup")

    async def _hand_back(self, action: str) -> None:
        """IVR_ACTION tells the dialplan what to do with the call; it is queued last, so it is
        set after the variables it needs (`_flush_vars`) and the dialplan never sees half a
        handover."""
        if self.hung_up:
            raise CallerHangup()
        self.show("IVR_ACTION", action)
        async with self._lock:
            await self._flush_vars()


def _result_code(result: dict) -> int:
    value = result.get("result", ("", ""))
    try:
        return int(value[0])
    except (TypeError, ValueError, IndexError):
        return -1 if result.get("error") else 0


def _keep_alive(writer: asyncio.StreamWriter) -> None:
    """TCP keepalive on a FastAGI connection: a silent dead peer ends the call's wait for a
    command's answer within about KEEPALIVE_IDLE_S + KEEPALIVE_INTERVAL_S * KEEPALIVE_PROBES."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)
    except OSError:  # not a TCP socket (tests), or the connection is already gone
        pass


class FastAgiServer:
    """Listens for Asterisk's FastAGI connections and runs one call per connection."""

    def __init__(self, hotline: "Hotline", host: str, port: int) -> None:
        self._hotline = hotline
        self._host, self._port = host, port
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self._host, self._port, limit=2**16)
        _LOGGER.info("FastAGI listening on %s:%d", self._host, self._port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read the AGI environment, then hand the session to panoramisk's Request.

        panoramisk's own Application.handler spins forever on a connection that closes before
        the blank line (it loops on read() returning b''), which blocks the whole event loop;
        this reads the headers with a deadline instead, and keeps panoramisk's command protocol.
        """
        from panoramisk.fast_agi import Request

        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\n\n"), HEADER_TIMEOUT)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
                ConnectionError):
            _LOGGER.info("FastAGI connection closed before its environment was complete")
            writer.close()
            return
        headers = dict(line.split(": ", 1) for line in raw.decode("utf-8", "replace").splitlines()
                       if ": " in line)
        _keep_alive(writer)
        try:
            if headers.get("agi_network_script") != "hotline":
                _LOGGER.error("FastAGI request for unknown script %r", headers.get("agi_network_script"))
                return
            await self._handle(Request(None, headers, reader, writer))
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, request) -> None:
        channel = AgiChannel(request, self._hotline)
        caller = caller_id(request.headers.get("agi_callerid", ""))
        if caller in ("", "unknown"):
            caller = ""

        on_event = mirror_call_state(channel.show)

        try:
            await self._hotline.run_call(channel, caller, on_event=on_event,
                                         channel_name=channel.name)
        except Exception:
            _LOGGER.exception("AGI call on %s failed", channel.name)
        finally:
            await channel.ear.close()
