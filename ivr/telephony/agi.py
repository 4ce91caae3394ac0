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
import time
from typing import TYPE_CHECKING

from ivr.errors import CallerHangup
from ivr.flow.channel import TIMEOUT, CallerInput, ListenSpec, PromptOut
from ivr.telephony.admin import CONTEXT_LIMIT, mirror_call_state, transfer_variables
from ivr.telephony.audio_fork import AgiAudioFork
from ivr.telephony.sanitize import agi_value, caller_id

if TYPE_CHECKING:
    from ivr.app import Hotline

_LOGGER = logging.getLogger(__name__)
_PLAIN = re.compile(r"[A-Za-z0-9_.:-]{1,200}")  # safe inside MSet's name=value,name=value
EAR_WAIT = 1.0  # seconds a question waits for the caller's audio stream to be set up
BARGE_KEYS = "0123456789*#"
HEADER_TIMEOUT = 5.0
COMMAND_TIMEOUT = 3600.0  # a STREAM FILE of a long prompt legitimately takes a while
DIGIT_SLICE_MS = 250  # while listening for speech too, keys are polled in slices this long
DIGIT_POLL_MS = 60  # ... and this long while the caller's words are being recognised


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
        self._ear = None  # the call's SpeechListener, forked when the call first plays something
        self._ear_task: asyncio.Task | None = None
        self._fork: AgiAudioFork | None = None
        self._no_ear = False
        self._playing = False
        self._last_heard = None
        self.on_timing = None  # (name, ms): set by the Hotline to publish Timing events

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
            async with asyncio.timeout(COMMAND_TIMEOUT):  # no extra task per command (wait_for makes one)
                result = await self._request.send_command(line)
        except (ConnectionError, ValueError, asyncio.IncompleteReadError, OSError):
            self.hung_up = True  # the socket closed: Asterisk dropped the channel
            raise CallerHangup() from None
        if result.get("error") == "AGIResultHangup" or result.get("status_code") == 511:
            self.hung_up = True
            raise CallerHangup()
        return result

    async def _flush_vars(self) -> None:
        """Pending variables in as few round trips as possible: one MSet for all those whose
        values are plain words (ids, scene names), one SET VARIABLE for each other."""
        if not self._vars:
            return
        pending, self._vars = self._vars, {}
        values = {name: agi_value(value, CONTEXT_LIMIT) for name, value in pending.items()}
        plain = {n: v for n, v in values.items() if _PLAIN.fullmatch(v)}
        if len(plain) > 1:
            await self._send("EXEC MSet " + agi_value(",".join(f"{n}={v}" for n, v in plain.items()),
                                                       CONTEXT_LIMIT * 2))
        else:
            plain = {}
        for name, value in values.items():
            if name not in plain:
                await self._send(f'SET VARIABLE {name} "{value}"')

    def show(self, name: str, value: str) -> None:
        """Set a channel variable before the next command (admins see it in `core show channel`)."""
        self._vars[name] = value

    async def play(self, prompt: PromptOut) -> CallerInput | None:
        path = await self._hotline.prompt_file(prompt)
        keys = BARGE_KEYS if prompt.barge_in else ""
        expect = prompt.expect
        ear = await self._open_ear(expect)
        if ear is not None:
            ear.clear()
            ear.prompt(barge=prompt.barge_in, lang=expect.lang or prompt.lang, hints=expect.hints,
                       detect=expect.detect)
        if ear is not None and ear.barged_at is not None:  # already talking: they don't need it
            try:
                return await self._words(ear, deadline=self.clock())
            finally:
                ear.idle()
        self._report_turn()
        self._playing = True
        try:
            result = await self.command(f'STREAM FILE {path} "{keys}"')
        finally:
            self._playing = False
        code = _result_code(result)
        if code < 0:
            _LOGGER.error("STREAM FILE %s failed on %s", path, self.name)
        if code > 0:
            return CallerInput("dtmf", chr(code))
        if ear is None:
            return None
        try:
            if ear.barged_at is not None:  # the caller spoke over it: their words are the answer
                self._report_barge(ear)
                return await self._words(ear, deadline=self.clock())
            return None
        finally:
            ear.idle()

    async def listen(self, spec: ListenSpec) -> CallerInput:
        ear = await self._open_ear(spec)
        if ear is None:
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

    async def _words(self, ear, *, deadline: float, keys: bool = False) -> CallerInput | None:
        """The caller's next words (or key, with `keys`); None when nothing began by `deadline`.
        WAIT FOR DIGIT cannot be interrupted, so it is sent in short slices; they also notice a
        hangup, which a controller only hears about when it sends a command."""
        while True:
            heard = ear.take()
            if heard is not None:
                return self._heard(heard)
            busy = ear.busy  # speech under way: its words are coming
            if not busy and (self.clock() >= deadline or ear.closed):
                return None
            slice_ms = DIGIT_POLL_MS if busy else min(max(deadline - self.clock(), 0.0) * 1000, DIGIT_SLICE_MS)
            result = await self.command(f"WAIT FOR DIGIT {max(int(slice_ms), 1)}")
            code = _result_code(result)
            if code > 0 and keys:
                return CallerInput("dtmf", chr(code))

    # -- speech --------------------------------------------------------------------------------
    def _start_ear(self) -> None:
        """Fork the caller's audio in the background, once, as soon as the call plays anything:
        by the first question that takes speech, it is streaming."""
        if self._ear_task is not None or self._no_ear or self.hung_up:
            return
        hearing = getattr(self._hotline, "hearing", None)
        server = getattr(self._hotline, "audio_server", None)
        if hearing is None or server is None or self._hotline.ami is None:
            self._no_ear = True
            return
        self._ear_task = asyncio.get_running_loop().create_task(self._fork_ear(hearing, server))

    async def _fork_ear(self, hearing, server):
        listener = hearing.listener(on_barge=self._on_barge)
        fork = AgiAudioFork(self._hotline.ami, server, self.name)
        self._fork = fork
        if not await fork.open(listener):
            self._no_ear = True
            return None
        self._ear = listener
        return listener

    async def _open_ear(self, spec: ListenSpec | None):
        """The call's listener when `spec` takes speech; None when speech is off or the fork
        could not start (the call goes on with keys)."""
        self._start_ear()
        if spec is None or not spec.speech or self._ear_task is None:
            return None
        try:  # never keep the caller waiting on the fork: this prompt goes on without speech
            async with asyncio.timeout(EAR_WAIT):
                return await asyncio.shield(self._ear_task)
        except TimeoutError:
            _LOGGER.warning("audio for %s not streaming yet; this question takes keys only", self.name)
            return None

    def _on_barge(self) -> None:
        if self._playing and self._fork is not None:
            self._fork.stop_prompt()

    def _heard(self, heard) -> CallerInput | None:
        if heard is None:
            return None
        self._last_heard = heard
        _LOGGER.debug("heard %r: %.1f s of speech ended %.0f ms ago, recognised %.0f ms ago", heard.text,
                     heard.seconds, (time.monotonic() - heard.speech_end) * 1000,
                     (time.monotonic() - heard.recognised) * 1000)
        if self.on_timing is not None:
            self.on_timing("asr", (heard.recognised - heard.speech_end) * 1000)
        return CallerInput("speech", heard.text, heard.confidence, heard.lang)

    def _report_barge(self, ear) -> None:
        """How long the prompt played on after the caller began to speak."""
        if ear.barge_onset is not None and self.on_timing is not None:
            self.on_timing("barge_in", (time.monotonic() - ear.barge_onset) * 1000)

    def _report_turn(self) -> None:
        """Turn latency: from the end of the caller's speech to the reply's first audio."""
        heard, self._last_heard = self._last_heard, None
        if heard is not None and self.on_timing is not None:
            self.on_timing("turn_latency", (time.monotonic() - heard.speech_end) * 1000)

    def close_ear(self) -> None:
        if self._ear_task is not None and not self._ear_task.done():
            self._ear_task.cancel()
        self._no_ear = True
        if self._fork is not None:
            self._fork.close()
            self._fork = None
        if self._ear is not None:
            self._ear.close()
            self._ear = None

    async def transfer(self, queue: str, context: dict) -> None:
        self.close_ear()
        for name, value in transfer_variables(queue, context).items():
            self.show(name, value)
        self.show("IVR_ACTION", "transfer")
        await self.command("NOOP transfer")

    async def hangup(self) -> None:
        self.close_ear()
        self.show("IVR_ACTION", "hangup")
        await self.command("NOOP hangup")


def _result_code(result: dict) -> int:
    value = result.get("result", ("", ""))
    try:
        return int(value[0])
    except (TypeError, ValueError, IndexError):
        return -1 if result.get("error") else 0


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
            channel.close_ear()
