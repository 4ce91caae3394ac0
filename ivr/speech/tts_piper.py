"""English voice: piper-tts 1.8 (VITS in onnxruntime), in process.

The voice is loaded on first use, once per process (`shared_piper` hands every caller the same
instance), with one onnxruntime intra-op thread: the box has 2 cores and calls render in parallel,
so two single-thread renders beat one two-thread render. onnxruntime's `InferenceSession.run` is
thread-safe; piper's espeak-ng phonemizer is a process-wide C library that piper itself guards
with a lock, so espeak-phonemized voices (all English piper voices) render concurrently. Other
phonemizers (pinyin, Hebrew, ...) are created lazily by piper without a lock, so those voices are
serialized here.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import numpy as np

from ivr.errors import TtsError, TtsModelMissingError, TtsUnavailableError
from ivr.speech.audio import Pcm, silence
from ivr.speech.tts import clean_text

SENTENCE_GAP = 0.2  # seconds of silence between sentences (piper returns one chunk per sentence)
VOLUME = 0.8  # piper peak-normalises each sentence to full scale; leave headroom for resampling
# piper runs a sentence as one ONNX call, and long ones get slow: 1,950 characters with no full
# stop took 15 s here (RTF 0.24) against 8.6 s for 99 short sentences (RTF 0.06). Runs longer
# than this are cut at a comma or space first.
MAX_RUN = 300
_SENTENCE_END = re.compile(r"(?<=[.!?;。！？；])\s+")

_SHARED: dict[tuple, "PiperSynthesizer"] = {}
_SHARED_LOCK = threading.Lock()


def pieces(text: str, limit: int = MAX_RUN) -> list[str]:
    """Text cut into runs of at most `limit` characters: at sentence ends, else at the last
    comma or space before the limit, else hard."""
    out: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        while len(sentence) > limit:
            cut = max(sentence.rfind(", ", 0, limit), sentence.rfind(" ", 0, limit))
            cut = cut + 1 if cut > 0 else limit
            out.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if sentence.strip():
            out.append(sentence.strip())
    if not out:
        return []
    # piper splits sentences itself: join short ones back into runs under the limit
    runs = [out[0]]
    for part in out[1:]:
        if len(runs[-1]) + 1 + len(part) <= limit:
            runs[-1] += " " + part
        else:
            runs.append(part)
    return runs


def _fingerprint(onnx: Path) -> str:
    """Name, size and mtime of the voice and its .json: a replaced voice gets a new voice_id."""
    parts = []
    for p in (onnx, onnx.with_name(onnx.name + ".json")):
        try:
            st = p.stat()
        except OSError:
            raise TtsModelMissingError(f"no piper voice file {p}: run `.venv/bin/ivr models install` "
                                       f"or point speech.piper_voice at a piper .onnx voice") from None
        parts.append(f"{st.st_size:x}.{st.st_mtime_ns:x}")
    return f"{onnx.name}:{'+'.join(parts)}"


class PiperSynthesizer:
    """A piper .onnx voice (its .onnx.json beside it). `synthesize` returns PCM at the voice's rate
    (22050 Hz for the medium voices); the cache resamples to 8/16 kHz."""

    def __init__(self, onnx_path: str | Path, *, threads: int = 1, sentence_gap: float = SENTENCE_GAP,
                 volume: float = VOLUME) -> None:
        self.path = Path(onnx_path)
        self.threads = max(1, int(threads))
        self.sentence_gap = float(sentence_gap)
        self.volume = float(volume)
        self._id = f"piper:{_fingerprint(self.path)}:g{self.sentence_gap:g}:v{self.volume:g}"
        self._voice = None
        self._load_lock = threading.Lock()
        self._run_lock: threading.Lock | None = None  # set for voices whose phonemizer is not thread-safe

    def voice_id(self, lang: str) -> str:
        return self._id

    @property
    def loaded(self) -> bool:
        return self._voice is not None

    def load(self):
        """The PiperVoice, loading it on first use (about 0.3 s for a medium voice)."""
        if self._voice is not None:
            return self._voice
        with self._load_lock:
            if self._voice is None:
                self._voice = self._load()
        return self._voice

    def _load(self):
        try:
            import onnxruntime
            from piper import PiperVoice
            from piper.config import PhonemeType, PiperConfig
        except ImportError as e:
            raise TtsUnavailableError(f"piper-tts is not installed ({e}); run ./setup.sh") from None
        config_path = self.path.with_name(self.path.name + ".json")
        try:
            config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise TtsModelMissingError(
                f"no piper voice file {config_path}: run `.venv/bin/ivr models install`") from None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise TtsError(f"piper voice config {config_path} is unreadable: {e}", code="tts-model-bad") from None
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        try:
            session = onnxruntime.InferenceSession(str(self.path), sess_options=options,
                                                   providers=["CPUExecutionProvider"])
        except FileNotFoundError:
            raise TtsModelMissingError(f"no piper voice file {self.path}: run `.venv/bin/ivr models install`") from None
        except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise TtsError(f"piper voice {self.path} cannot be loaded: {e}", code="tts-model-bad") from None
        if config.phoneme_type != PhonemeType.ESPEAK:
            self._run_lock = threading.Lock()
        return PiperVoice(session=session, config=config)

    @property
    def sample_rate(self) -> int:
        return int(self.load().config.sample_rate)

    def synthesize(self, text: str, lang: str) -> Pcm:
        text = clean_text(text)
        # piper reads [[ ... ]] as raw phonemes: caller-influenced text must not reach that syntax
        text = text.replace("[", "(").replace("]", ")")
        voice = self.load()
        rate = int(voice.config.sample_rate)
        if not text:
            return silence(0.2, rate)
        from piper.config import SynthesisConfig

        syn = SynthesisConfig(normalize_audio=True, volume=self.volume)
        try:
            chunks = []
            for run in pieces(text):
                if self._run_lock is not None:
                    with self._run_lock:
                        chunks += [c.audio_int16_array for c in voice.synthesize(run, syn)]
                else:
                    chunks += [c.audio_int16_array for c in voice.synthesize(run, syn)]
        except TtsError:
            raise
        except Exception as e:
            raise TtsError(f"piper failed on {len(text)} characters: {type(e).__name__}: {e}") from None
        if not chunks:  # only punctuation, or nothing espeak could phonemize
            return silence(0.2, rate)
        gap = np.zeros(int(round(self.sentence_gap * rate)), dtype=np.int16)
        parts: list[np.ndarray] = []
        for i, chunk in enumerate(chunks):
            if i:
                parts.append(gap)
            parts.append(chunk.astype("<i2", copy=False))
        return Pcm(np.concatenate(parts).astype("<i2", copy=False).tobytes(), rate)


def shared_piper(onnx_path: str | Path, *, threads: int = 1) -> PiperSynthesizer:
    """One PiperSynthesizer per voice file (and version of it) per process, so the call-time and
    pre-render dispatchers share one loaded model instead of holding two copies."""
    path = Path(onnx_path).resolve()
    key = (str(path), _fingerprint(path), threads)
    with _SHARED_LOCK:
        synth = _SHARED.get(key)
        if synth is None:
            synth = _SHARED[key] = PiperSynthesizer(path, threads=threads)
        return synth
