"""Speech output: synthesizers (espeak-ng for now), audio format helpers, and the prompt cache that
renders the files Asterisk plays (`<key>.wav` 8 kHz + `<key>.sln16` 16 kHz)."""

from ivr.speech.audio import Pcm
from ivr.speech.prompts import PromptCache, duration
from ivr.speech.tts import EspeakSynthesizer, Synthesizer

__all__ = ["EspeakSynthesizer", "Pcm", "PromptCache", "Synthesizer", "duration"]
