"""Endpointing: VAD probabilities in, utterances out. Pure: no I/O, no clock but the audio's own.

An utterance starts at the first voiced chunk (with `preroll` seconds of audio before it, so its
first syllable is kept) and ends after `end_silence` of silence or at `max_utterance`. Voiced
audio shorter than `min_speech` is a noise (a cough, a click) and is dropped. `barge` is reported
once the speech has lasted `barge_min_speech`: shorter backchannels ("hmm", "ok") never stop a
prompt.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ivr.speech.vad import CHUNK, RATE

CHUNK_SECONDS = CHUNK / RATE


@dataclass(frozen=True)
class Onset:
    at: float  # stream seconds of the first voiced chunk


@dataclass(frozen=True)
class Barge:
    at: float  # when the speech became long enough to interrupt a prompt
    onset: float


@dataclass(frozen=True)
class Utterance:
    audio: np.ndarray  # float32, 16 kHz, preroll included
    onset: float
    end: float  # stream seconds of the last voiced chunk's end
    detected: float  # stream seconds when the end was decided (end + the silence waited)
    cut: bool = False  # hit max_utterance

    @property
    def seconds(self) -> float:
        return len(self.audio) / RATE


@dataclass(frozen=True)
class Dropped:
    onset: float
    voiced: float  # seconds: too short to be speech


class Endpointer:
    def __init__(self, *, threshold: float = 0.5, end_silence: float = 0.3, max_utterance: float = 15.0,
                 barge_min_speech: float = 0.25, min_speech: float = 0.1, preroll: float = 0.3) -> None:
        self.threshold = threshold
        self.neg_threshold = max(threshold - 0.15, 0.05)  # hysteresis: a dip is not the end
        self.end_chunks = max(1, round(end_silence / CHUNK_SECONDS))
        self.max_chunks = max(1, round(max_utterance / CHUNK_SECONDS))
        self.barge_chunks = max(1, round(barge_min_speech / CHUNK_SECONDS))
        self.min_chunks = max(1, round(min_speech / CHUNK_SECONDS))
        self._preroll: deque[np.ndarray] = deque(maxlen=max(1, round(preroll / CHUNK_SECONDS)))
        self._chunks: list[np.ndarray] = []
        self._t = 0  # chunks seen
        self._onset = -1  # chunk index of the current utterance's first voiced chunk; -1 idle
        self._voiced = 0
        self._silent = 0
        self._last_voiced = 0
        self._barged = False

    @property
    def now(self) -> float:
        return self._t * CHUNK_SECONDS

    @property
    def speaking(self) -> bool:
        return self._onset >= 0

    @property
    def barging(self) -> bool:
        """The utterance under way is already long enough to interrupt a prompt."""
        return self._onset >= 0 and self._barged

    def feed(self, prob: float, chunk: np.ndarray) -> list:
        self._t += 1
        events: list = []
        if self._onset < 0:
            if prob >= self.threshold:
                self._onset, self._voiced, self._silent, self._barged = self._t - 1, 1, 0, False
                self._last_voiced = self._t
                self._chunks = [*self._preroll, chunk]
                self._preroll.clear()
                events.append(Onset(self._onset * CHUNK_SECONDS))
            else:
                self._preroll.append(chunk)
            return events
        self._chunks.append(chunk)
        if prob >= self.neg_threshold:
            self._silent = 0
            self._voiced += 1
            self._last_voiced = self._t
        else:
            self._silent += 1
        if not self._barged and self._silent == 0 and self._voiced >= self.barge_chunks:
            self._barged = True
            events.append(Barge(self.now, self._onset * CHUNK_SECONDS))
        if self._silent >= self.end_chunks or len(self._chunks) >= self.max_chunks:
            events.append(self._close(cut=self._silent < self.end_chunks))
        return events

    def _close(self, *, cut: bool):
        onset = self._onset * CHUNK_SECONDS
        voiced = self._voiced * CHUNK_SECONDS
        chunks, self._chunks, self._onset = self._chunks, [], -1
        if self._voiced < self.min_chunks:
            return Dropped(onset, voiced)
        return Utterance(np.concatenate(chunks), onset, self._last_voiced * CHUNK_SECONDS, self.now, cut)

    def reset(self) -> None:
        """Forget a half-heard utterance (a new prompt starts, the caller's turn is over)."""
        self._chunks, self._onset, self._voiced, self._silent = [], -1, 0, 0
