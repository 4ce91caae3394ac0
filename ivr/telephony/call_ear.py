"""A call's speech, as both controllers handle it: the listener, whose audio stream is set up in
the background when the call first plays anything, and the timings the call reports.

The transport supplies `open_stream(listener)`, which starts Asterisk streaming the caller's
voice to the listener and returns the stream (anything with `close()`, sync or async) or None
if it could not; FastAGI forks with ChanSpy (audio_fork.py), ARI taps with a snoop (ari_media.py).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from typing import Any, Awaitable, Callable

from ivr.flow.channel import CallerInput, ListenSpec

_LOGGER = logging.getLogger(__name__)
EAR_WAIT = 1.0  # seconds a question waits for the caller's audio stream to be set up


class CallEar:
    def __init__(self, hotline, name: str, open_stream: Callable[[Any], Awaitable[Any]], *,
                 on_barge: Callable[[], None], on_change: Callable[[], None] | None = None) -> None:
        self._hearing = getattr(hotline, "hearing", None)
        self._name = name
        self._open_stream = open_stream
        self._on_barge = on_barge
        self._on_change = on_change
        self._task: asyncio.Task | None = None
        self.stream = None
        self.listener = None
        self.off = self._hearing is None  # speech is off, failed to start, or the call is over
        self._last_heard = None
        self.on_timing: Callable[[str, float], None] | None = None

    def start(self) -> None:
        """Set up the audio stream in the background, once: by the first question that takes
        speech, it is streaming."""
        if self._task is None and not self.off:
            self._task = asyncio.get_running_loop().create_task(self._open())

    async def _open(self):
        listener = self._hearing.listener(on_barge=self._on_barge, on_change=self._on_change)
        stream = await self._open_stream(listener)
        if stream is None:
            self.off = True
            return None
        self.stream, self.listener = stream, listener
        return listener

    async def get(self, spec: ListenSpec | None):
        """The listener when `spec` takes speech; None when speech is off, the stream could not
        start, or it is not up within EAR_WAIT (this question then takes keys only)."""
        self.start()
        if spec is None or not spec.speech or self._task is None or self.off and self.listener is None:
            return None
        try:
            async with asyncio.timeout(EAR_WAIT):
                return await asyncio.shield(self._task)
        except TimeoutError:
            _LOGGER.warning("audio for %s not streaming yet; this question takes keys only", self._name)
            return None

    # -- what the call reports -----------------------------------------------------------------
    def heard(self, heard) -> CallerInput | None:
        """The recognised words as the engine's input (None stays None); times the recognition."""
        if heard is None:
            return None
        self._last_heard = heard
        self._timing("asr", (heard.recognised - heard.speech_end) * 1000)
        return CallerInput("speech", heard.text, heard.confidence, heard.lang)

    def barged(self, stopped_at: float | None = None) -> None:
        """How long the prompt played on after the caller began to speak."""
        onset = self.listener.barge_onset if self.listener is not None else None
        if onset is not None:
            self._timing("barge_in", ((stopped_at or time.monotonic()) - onset) * 1000)

    def replying(self) -> None:
        """The reply starts: turn latency, from the end of the caller's speech to now."""
        heard, self._last_heard = self._last_heard, None
        if heard is not None:
            self._timing("turn_latency", (time.monotonic() - heard.speech_end) * 1000)

    def _timing(self, name: str, ms: float) -> None:
        if self.on_timing is not None:
            self.on_timing(name, ms)

    async def close(self) -> None:
        """Stop listening (a transfer, a hangup, the call's end): Asterisk drops the stream."""
        self.off = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
        listener, stream, self.listener, self.stream = self.listener, self.stream, None, None
        if listener is not None:
            listener.close()
        if stream is not None:
            result = stream.close()
            if inspect.isawaitable(result):
                await result
