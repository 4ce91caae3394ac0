"""One call's ear: live audio in; barge-in signals and recognised utterances out.

The transport feeds it the caller's audio (an AudioSocket sink) and tells it what the call is
doing: playing an interruptible prompt, playing one that may not be interrupted, or waiting for
an answer. From that it decides which utterances count:
- while an interruptible prompt plays, only speech that lasts `barge_min_speech` counts; it
  calls `on_barge` at once (the transport stops the prompt) and is then captured from its start;
- while a prompt that may not be interrupted plays, speech is ignored;
- while listening (and between turns), every utterance counts.
Each counted utterance is transcribed at once, in the recogniser pool, and queued for `result()`.
Noise that the recogniser finds no words in is dropped, and the caller is still listened to.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

import numpy as np

from ivr.errors import AsrError
from ivr.speech.endpoint import Barge, Endpointer, Onset, Utterance

_LOGGER = logging.getLogger(__name__)
IDLE, PROMPT, LOCKED, LISTEN = "idle", "prompt", "locked", "listen"
GAP_CHECK = 0.1  # seconds without audio frames, during speech, that count as silence

Recognize = Callable[[np.ndarray, str, tuple[str, ...]], Awaitable[object]]


@dataclass(frozen=True)
class Heard:
    text: str
    confidence: float
    speech_end: float  # time.monotonic() when the caller stopped speaking
    recognised: float  # time.monotonic() when the text was ready
    seconds: float  # the utterance's length
    lang: str = ""  # the language it was recognised in


class SpeechListener:
    def __init__(self, vad_stream, endpointer: Endpointer, recognize: Recognize, *,
                 on_barge: Callable[[], None] | None = None, on_change: Callable[[], None] | None = None,
                 asr_grace: float = 20.0) -> None:
        self._vad = vad_stream
        self._ep = endpointer
        self._recognize = recognize
        self.on_barge = on_barge
        self.on_change = on_change  # a transport waiting on several things at once is woken
        self._asr_grace = asr_grace  # a result() already waiting on speech waits at most this more
        self._mode = IDLE
        self._onset_mode = IDLE
        self._barged = False
        self._hints: tuple[str, ...] = ()
        self._detect: tuple[str, ...] = ()
        self._lang = "en"
        self._results: list[Heard] = []
        self._pending = 0
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._prev = 0.0  # last 8 kHz sample, for upsampling across frames
        self.barged_at: float | None = None  # time.monotonic() of the last barge-in
        self.barge_onset: float | None = None  # time.monotonic() when that speech began
        self.closed = False
        self.frames = 0
        self._last_frame = 0.0
        self._gap_timer: asyncio.TimerHandle | None = None

    # -- what the call is doing --------------------------------------------------------------
    def prompt(self, *, barge: bool, lang: str, hints: tuple[str, ...] = (),
               detect: tuple[str, ...] = ()) -> None:
        """A prompt is about to play. If the caller is already in full flow, an interruptible
        prompt is barged in on before it starts (`barged_at` is set: don't play it)."""
        self._mode = PROMPT if barge else LOCKED
        self._lang, self._hints, self._detect = lang, hints, detect
        self.barged_at = None
        if not barge:
            self._ep.reset()
        elif self._ep.barging and self._onset_mode != LOCKED:
            self._barged = True
            self.barged_at = time.monotonic()

    def listen(self, *, lang: str, hints: tuple[str, ...] = (), detect: tuple[str, ...] = ()) -> None:
        if self._mode == LOCKED:
            self._ep.reset()  # speech that began over a locked prompt is not an answer
        self._mode = LISTEN
        self._lang, self._hints, self._detect = lang, hints, detect

    def idle(self) -> None:
        self._mode = IDLE

    def clear(self) -> None:
        """Forget answers nobody asked for (a new question is about to be asked)."""
        self._results.clear()

    @property
    def busy(self) -> bool:
        """A counted utterance is under way or being recognised: an answer is coming."""
        return self._pending > 0 or (self._ep.speaking and self._counts(self._onset_mode, self._barged))

    # -- AudioSink ---------------------------------------------------------------------------
    def audio(self, pcm: bytes, rate: int) -> None:
        if self.closed:
            return
        self.frames += 1
        self._last_frame = time.monotonic()
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        if rate == 8000:
            samples = self._upsample(samples)
        self._push(samples)
        if self._ep.speaking and self._gap_timer is None:
            self._gap_timer = asyncio.get_running_loop().call_later(GAP_CHECK, self._fill_gap)

    def _push(self, samples: np.ndarray) -> None:
        for prob, chunk in self._vad.push(samples):
            for event in self._ep.feed(prob, chunk):
                self._on(event)

    def _fill_gap(self) -> None:
        """No audio is coming (the phone stopped sending RTP when its user stopped talking, as
        SIPp and phones with silence suppression do): what is missing counts as silence, or an
        utterance would never end."""
        self._gap_timer = None
        if self.closed or not self._ep.speaking:
            return
        missing = time.monotonic() - self._last_frame
        if missing >= GAP_CHECK:
            self._last_frame = time.monotonic()
            self._push(np.zeros(int(missing * 16000), np.float32))
        if self._ep.speaking:
            self._gap_timer = asyncio.get_running_loop().call_later(GAP_CHECK, self._fill_gap)

    def dtmf(self, digit: str) -> None:
        pass  # keys come from the call's own channel (AGI / ARI events)

    def stream_closed(self) -> None:
        """Asterisk closed the stream: the caller hung up (or the fork ended)."""
        self.closed = True
        self._notify()

    def close(self) -> None:
        self.closed = True
        if self._gap_timer is not None:
            self._gap_timer.cancel()
        for task in self._tasks:
            task.cancel()
        self._notify()

    # -- results -----------------------------------------------------------------------------
    async def result(self, timeout: float) -> Heard | None:
        """The next counted utterance's text; None if none began within `timeout` (one that has
        begun is waited for until it ends and is recognised)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        while True:
            if self._results:
                return self._results.pop(0)
            if self.closed:
                return None
            now = loop.time()
            if self.busy:
                deadline = max(deadline, now + self._asr_grace)
            if now >= deadline:
                return None
            self._changed.clear()
            try:
                async with asyncio.timeout(deadline - now):
                    await self._changed.wait()
            except TimeoutError:
                pass

    def ready(self) -> bool:
        return bool(self._results)

    def take(self) -> Heard | None:
        """The oldest recognised utterance, if any, without waiting."""
        return self._results.pop(0) if self._results else None

    # -- internals ---------------------------------------------------------------------------
    def _upsample(self, samples: np.ndarray) -> np.ndarray:
        """8 kHz -> 16 kHz by linear interpolation, continuous across frames (no clicks)."""
        if not len(samples):
            return samples
        prev = np.concatenate([[self._prev], samples[:-1]])
        out = np.empty(len(samples) * 2, np.float32)
        out[0::2] = (prev + samples) / 2
        out[1::2] = samples
        self._prev = float(samples[-1])
        return out

    @staticmethod
    def _counts(mode: str, barged: bool) -> bool:
        return mode in (LISTEN, IDLE) or (mode == PROMPT and barged)

    def _on(self, event) -> None:
        if isinstance(event, Onset):
            self._onset_mode, self._barged = self._mode, False
        elif isinstance(event, Barge):
            if self._mode == PROMPT and self._onset_mode != LOCKED:
                self._barged = True
                self.barged_at = time.monotonic()
                self.barge_onset = self.barged_at - (self._ep.now - event.onset)
                if self.on_barge is not None:
                    try:
                        self.on_barge()
                    except Exception:
                        _LOGGER.exception("barge-in handler failed")
        elif isinstance(event, Utterance):
            if self._counts(self._onset_mode, self._barged):
                lag = self._ep.now - event.end  # audio we have seen past the end of speech
                self._start_recognition(event, time.monotonic() - lag)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        if self.on_change is not None:
            self.on_change()

    def _start_recognition(self, utterance: Utterance, speech_end: float) -> None:
        self._pending += 1
        task = asyncio.get_running_loop().create_task(
            self._recognise(utterance, speech_end, self._lang, self._hints, self._detect))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _recognise(self, utterance: Utterance, speech_end: float, lang: str,
                         hints: tuple[str, ...], detect: tuple[str, ...]) -> None:
        try:
            if detect:
                transcript = await self._recognize(utterance.audio, lang, hints, detect=detect)
            else:
                transcript = await self._recognize(utterance.audio, lang, hints)
            text = getattr(transcript, "text", "") or ""
            if text.strip():
                self._results.append(Heard(text.strip(), float(getattr(transcript, "confidence", 1.0)),
                                           speech_end, time.monotonic(), utterance.seconds,
                                           getattr(transcript, "lang", "") or lang))
        except AsrError as exc:
            _LOGGER.warning("utterance of %.1f s not recognised: %s", utterance.seconds, exc)
        except Exception:
            _LOGGER.exception("recognition failed")
        finally:
            self._pending -= 1
            self._notify()
