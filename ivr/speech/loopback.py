"""Speech in the simulator (`ivr simulate --audio`): the caller's scripted words are spoken by the
hotline's voice, squeezed through the telephone band (8 kHz) and recognised by the on-box ASR,
so flow authors hear what the recogniser makes of their scenes."""

from __future__ import annotations

import asyncio

import numpy as np

from ivr.config import SpeechConfig
from ivr.speech.audio import resample


class SpokenLoopback:
    def __init__(self, cfg: SpeechConfig, *, synthesizer=None, asr=None) -> None:
        if synthesizer is None:
            from ivr.speech.voices import build_synthesizer

            synthesizer = build_synthesizer(cfg)
        if asr is None:
            from ivr.speech.asr import AsrPool

            asr = AsrPool(cfg)
        self._synth = synthesizer
        self._asr = asr

    async def hear(self, text: str, lang: str, hints: tuple[str, ...] = (), detect: tuple[str, ...] = ()):
        """The Transcript of `text` as a caller would be heard on a call; with `detect`, the
        language is told by ear (the voice speaks `text` in the language its script suggests)."""
        if detect:
            lang = "zh" if any("\u3400" <= ch <= "\u9fff" for ch in text) and "zh" in detect else lang
        pcm = await asyncio.to_thread(self._synth.synthesize, text, lang)
        phone = resample(pcm.samples, pcm.rate, 8000)  # the telephone band
        audio = resample(phone, 8000, 16000).astype(np.float32) / 32768.0
        return await self._asr.transcribe(audio, lang, hints, detect=detect)
