"""Text to speech. A `Synthesizer` turns (text, lang) into 16-bit mono PCM; `EspeakSynthesizer`
runs espeak-ng, the stop-gap voice until the speech issue brings better ones.

Caller-influenced text (a name, a claim status) reaches espeak-ng only on its standard input,
never through a shell nor as an argument, so nothing in it is ever parsed as an option or run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import unicodedata
from typing import Protocol, runtime_checkable

from ivr.errors import TtsError, TtsUnavailableError
from ivr.speech.audio import Pcm, parse_wav, silence

MAX_CHARS = 2000  # about 300 words, two minutes of speech: longer is a flow or data bug

# Measured on Debian 12's espeak-ng 1.51: the `cmn` voice has no Chinese-character dictionary
# there and reads 您好 as English code-point gibberish; `cmn-latn-pinyin` reads the characters
# (and digits) in Mandarin with tones, and switches to English for Latin words like "agent".
DEFAULT_VOICES = {"en": "en-us", "zh": "cmn-latn-pinyin"}

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


@runtime_checkable
class Synthesizer(Protocol):
    """Anything that speaks text. `voice_id(lang)` names the voice and its settings: the prompt
    cache keys files by it, so changing a voice re-renders instead of serving stale audio."""

    def voice_id(self, lang: str) -> str: ...

    def synthesize(self, text: str, lang: str) -> Pcm: ...


def clean_text(text: str) -> str:
    """Text as it should be spoken: NFC, control characters and runs of white space as one space.
    Raises TtsError (tts-text-too-long) past MAX_CHARS rather than tie a line up for minutes."""
    if not isinstance(text, str):
        raise TtsError(f"prompt text must be a string, not {type(text).__name__}", code="tts-bad-text")
    text = " ".join(_CONTROL.sub(" ", unicodedata.normalize("NFC", text)).split())
    if len(text) > MAX_CHARS:
        raise TtsError(f"prompt text is {len(text)} characters; at most {MAX_CHARS} can be spoken "
                       f"(split it or shorten the data it shows)", code="tts-text-too-long")
    return text


class EspeakSynthesizer:
    """espeak-ng as a subprocess: argv only, text on stdin, WAV on stdout, killed after `timeout`."""

    def __init__(self, *, binary: str = "espeak-ng", voices: dict[str, str] | None = None,
                 words_per_minute: int = 160, pitch: int = 50, timeout: float = 20.0) -> None:
        self.binary = binary
        self.voices = {**DEFAULT_VOICES, **(voices or {})}
        self.words_per_minute = int(words_per_minute)
        self.pitch = int(pitch)
        self.timeout = timeout

    def voice_id(self, lang: str) -> str:
        return f"espeak-ng:{self._voice(lang)}:s{self.words_per_minute}:p{self.pitch}"

    def _voice(self, lang: str) -> str:
        try:
            return self.voices[lang]
        except KeyError:
            raise TtsError(f"no espeak-ng voice for language {lang!r} (have: {', '.join(sorted(self.voices))})",
                           code="tts-no-voice") from None

    def _exe(self) -> str:
        exe = shutil.which(self.binary)
        if exe is None:
            raise TtsUnavailableError(
                f"{self.binary} is not installed or not on PATH; install it with "
                f"`apt-get install espeak-ng` (./setup.sh does this)")
        return exe

    def _argv(self, lang: str, *extra: str) -> list[str]:
        return [self._exe(), "-v", self._voice(lang), "-s", str(self.words_per_minute),
                "-p", str(self.pitch), "-b", "1", *extra, "--stdin"]

    def _run(self, argv: list[str], text: str) -> bytes:
        try:
            proc = subprocess.run(argv, input=text.encode("utf-8"), capture_output=True,
                                  timeout=self.timeout, shell=False, check=False,
                                  env={**os.environ, "LC_ALL": "C.UTF-8"})
        except subprocess.TimeoutExpired:
            raise TtsError(f"{self.binary} took longer than {self.timeout:g}s", code="tts-timeout") from None
        except OSError as e:
            raise TtsUnavailableError(f"cannot run {self.binary}: {e}; install it with "
                                      f"`apt-get install espeak-ng`") from None
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip()[:300]
            raise TtsError(f"{self.binary} exited with {proc.returncode}: {err}")
        return proc.stdout

    def synthesize(self, text: str, lang: str) -> Pcm:
        text = clean_text(text)
        argv = self._argv(lang, "--stdout")  # resolve the voice first: a bad lang fails even for ""
        if not text:
            return silence(0.2, 22050)
        blob = self._run(argv, text)
        try:
            return parse_wav(blob)
        except ValueError as e:
            raise TtsError(f"{self.binary} wrote no usable audio: {e}") from None

    def phonemes(self, text: str, lang: str) -> str:
        """espeak-ng's phoneme mnemonics for text (-q -x): for checking how a voice reads it."""
        return self._run(self._argv(lang, "-q", "-x"), clean_text(text)).decode("utf-8", "replace")
