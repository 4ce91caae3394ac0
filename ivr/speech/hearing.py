"""Hearing: what every live call shares to understand speech. One VAD model and one recogniser
pool per process; one `SpeechListener` per call that needs one."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ivr.config import SpeechConfig
from ivr.speech.endpoint import Endpointer
from ivr.speech.listener import SpeechListener
from ivr.speech.vad import SileroVad


class Hearing:
    def __init__(self, cfg: SpeechConfig, *, asr=None, vad: SileroVad | None = None) -> None:
        self.cfg = cfg
        self.vad = vad or SileroVad()
        self._asr = asr
        self.listeners = 0

    @property
    def asr(self):
        if self._asr is None:
            from ivr.speech.asr import AsrPool

            self._asr = AsrPool(self.cfg)
        return self._asr

    def warm(self) -> None:
        """Load the models now (blocking: call it off the loop), so the first caller doesn't wait.
        A missing model raises its clear error here, at start-up."""
        self.vad.warm()
        self.asr.warm()

    async def recognize(self, audio: np.ndarray, lang: str, hints: tuple[str, ...] = (), *,
                        detect: tuple[str, ...] = ()):
        return await self.asr.transcribe(audio, lang, hints, detect=detect)

    def listener(self, on_barge: Callable[[], None] | None = None,
                 on_change: Callable[[], None] | None = None) -> SpeechListener:
        cfg = self.cfg
        self.listeners += 1
        endpointer = Endpointer(threshold=cfg.vad_threshold, end_silence=cfg.end_silence,
                                max_utterance=cfg.max_utterance, barge_min_speech=cfg.barge_min_speech)
        return SpeechListener(self.vad.stream(), endpointer, self.recognize, on_barge=on_barge,
                              on_change=on_change, asr_grace=cfg.max_utterance + cfg.asr_timeout)
