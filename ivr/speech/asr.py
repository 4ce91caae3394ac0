"""Speech recognition with Whisper (faster-whisper's CTranslate2 model), tuned for short
telephone utterances. `WhisperRecognizer.recognize()` blocks; `AsrPool` (asr_pool.py) runs it
off the event loop; `transcribe_file()` serves `ivr transcribe`.

Why not `WhisperModel.transcribe()`: it pads every input to 30 s (`pad_or_trim` is fixed at 3,000
frames), so a 2 s answer costs a 30 s encoder pass. Here the log-mel features are computed for
the utterance padded to a 10 s window and handed to CTranslate2 directly, which accepts shorter
encoder inputs: about 3x faster at the same accuracy (ARCHITECTURE.md section 6). Windows under
10 s made the models loop, so longer utterances are cut into window-sized pieces instead.

Decoding is greedy (temperature 0, no fallback), without timestamps and without previous text;
the initial prompt carries the step's expected words (`hints`) to bias the decoder.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ivr.errors import AsrError, AsrModelMissingError, IvrError
from ivr.nlu.numbers import normalize_numbers
from ivr.speech import asr_guards
from ivr.speech.asr_guards import RATE, VAD_GATE

NO_SPEECH_LOGPROB = -0.7  # with no_speech_prob over the limit, a guess this unsure is dropped
TOKENS_PER_SECOND = 8  # cap on decoded tokens per second of audio (fast speech is ~5)
ZH_PREAMBLE = "以下是普通话的句子。"  # steers Whisper to Mandarin in Simplified characters
MAX_PROMPT_TOKENS = 96  # whisper allows 223; hints beyond this are dropped


@dataclass(frozen=True)
class Transcript:
    """What the caller said. `text` is tidied and has digit runs as digits; `raw` is the model's
    own text; `confidence` is exp(average token log-probability) x (1 - no_speech_prob), 0 when
    the text was rejected, and `rejected` says why ("quiet", "no-speech", "loop", "echo",
    "hallucination", "too-short"), empty when the text was accepted. Audio stopped by the gates
    before the model (too short, quiet, no voice for the VAD) reports no_speech_prob 1.0."""

    text: str
    raw: str
    confidence: float
    no_speech_prob: float
    lang: str
    audio_seconds: float
    elapsed_seconds: float
    rejected: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Piece:
    """One decoded window: the model's text and scores."""

    raw: str
    tokens: int
    avg_logprob: float
    no_speech_prob: float
    hit_cap: bool


class WhisperRecognizer:
    """One CTranslate2 Whisper model, loaded on first use. `threads` CPU threads per
    recognition; `workers` recognitions may run at once from different Python threads
    (CTranslate2 releases the GIL and keeps one copy of the weights)."""

    def __init__(self, model_dir: str | Path, *, window: float = 10.0, threads: int = 1,
                 no_speech_max: float = 0.6, workers: int = 1, compute_type: str = "int8") -> None:
        self.model_dir = Path(model_dir)
        self.window = float(window)
        self.threads = int(threads)
        self.workers = int(workers)
        self.no_speech_max = float(no_speech_max)
        self.compute_type = compute_type
        self._model = None
        self._tokenizers: dict[str, object] = {}
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        """Load the model once (thread-safe); raises AsrModelMissingError / AsrError."""
        if self._model is not None:
            return
        with self._lock:
            if self._model is None:
                self._model = self._open()

    def _open(self):
        if not (self.model_dir / "model.bin").is_file():
            raise AsrModelMissingError(f"no Whisper model in {self.model_dir} (model.bin missing); "
                                       f"run `ivr models install`")
        from faster_whisper import WhisperModel

        try:
            return WhisperModel(str(self.model_dir), device="cpu", compute_type=self.compute_type,
                                cpu_threads=self.threads, num_workers=self.workers)
        except (RuntimeError, ValueError, OSError) as e:
            raise AsrError(f"cannot load the Whisper model in {self.model_dir}: {e}; "
                           f"reinstall it with `ivr models install`", code="asr-model-invalid") from None

    def warm(self, lang: str) -> None:
        """Load the model, the tokenizer and the VAD, and run one decode: a first call otherwise
        pays about 0.1 s more for CTranslate2's first allocations."""
        import numpy as np

        self.load()
        self._tokenizer(lang)
        asr_guards.speech_prob(np.zeros(RATE, np.float32))
        self._decode([np.zeros(RATE, np.float32)], lang, ())

    def recognize(self, audio, lang: str, hints: tuple[str, ...] = ()) -> Transcript:
        """Blocking: 16 kHz mono audio (float32 in [-1, 1] or int16) to a Transcript."""
        return self.recognize_many([audio], lang, hints)[0]

    def recognize_many(self, audios: list, lang: str, hints: tuple[str, ...] = ()) -> list[Transcript]:
        """Several utterances in one batched CTranslate2 call (same language and hints)."""
        self.load()
        self._tokenizer(lang)  # an English-only model refuses other languages, even for silence
        started = time.perf_counter()
        signals = [asr_guards.as_float(a) for a in audios]
        gates = [asr_guards.audio_gate(x) for x in signals]
        pieces = [[] if gate else asr_guards.split(x, self.window) for x, gate in zip(signals, gates)]
        pieces = [[p for p in ps if asr_guards.speech_prob(p) >= VAD_GATE] for ps in pieces]
        flat = [p for ps in pieces for p in ps]
        decoded = iter(self._decode(flat, lang, hints) if flat else [])
        elapsed = time.perf_counter() - started
        results = []
        for x, gate, ps in zip(signals, gates, pieces):
            seconds = len(x) / RATE
            if gate or not ps:
                results.append(_empty(lang, seconds, elapsed, gate or "no-speech"))
                continue
            results.append(self._merge([next(decoded) for _ in ps], lang, hints, seconds, elapsed))
        return results

    def detect_language(self, audio, candidates: tuple[str, ...]) -> tuple[str, float]:
        """Blocking: which of `candidates` is spoken, and its share of their probability (one
        encoder pass over the first window). Needs a multilingual model."""
        import ctranslate2
        import numpy as np

        self.load()
        if not self._model.model.is_multilingual:
            return candidates[0], 0.0
        x = asr_guards.as_float(audio)
        feats = np.stack([self._features(asr_guards.split(x, self.window)[0])])
        found = dict(self._model.model.detect_language(ctranslate2.StorageView.from_array(feats))[0])
        scores = {c: found.get(f"<|{c}|>", 0.0) for c in candidates}
        best = max(scores, key=scores.get)
        return best, scores[best] / (sum(scores.values()) or 1.0)

    # --- decoding ---------------------------------------------------------------------------

    def _decode(self, pieces: list, lang: str, hints: tuple[str, ...]) -> list[_Piece]:
        import ctranslate2
        import numpy as np

        tok = self._tokenizer(lang)
        prompt = self._prompt(tok, lang, hints)
        feats = np.stack([self._features(p) for p in pieces])
        caps = [_token_cap(len(p) / RATE) for p in pieces]
        results = self._model.model.generate(
            ctranslate2.StorageView.from_array(feats), [prompt] * len(pieces),
            beam_size=1, max_length=len(prompt) + max(caps), return_scores=True,
            return_no_speech_prob=True, suppress_blank=True, suppress_tokens=self._suppressed(tok))
        out = []
        for res, cap in zip(results, caps):
            ids = res.sequences_ids[0]
            n = len(ids)
            out.append(_Piece(raw=tok.decode(ids[:cap]).strip(), tokens=n,
                              avg_logprob=res.scores[0] * n / (n + 1) if n else -10.0,
                              no_speech_prob=res.no_speech_prob, hit_cap=n >= cap))
        return out

    def _features(self, piece):
        """Log-mel of the piece zero-padded to the window (not to 30 s). Only the audio and 0.5 s
        of zeros go through the STFT: the extractor floors every frame at (its max - 8), so the
        remaining frames of zeros are that floor, filled in directly (a 4x cheaper extraction)."""
        import numpy as np

        frames = int(round(self.window * 100))
        chunk = np.zeros(min(frames * 160, len(piece) + RATE // 2), np.float32)
        chunk[:len(piece)] = piece[:len(chunk)]
        mel = self._model.feature_extractor(chunk)[:, :frames]
        out = np.full((mel.shape[0], frames), mel.max() - 2.0, np.float32)  # (floor + 4) / 4
        out[:, :mel.shape[1]] = mel
        return out

    def _tokenizer(self, lang: str):
        lang = "zh" if lang.startswith("zh") else lang
        tok = self._tokenizers.get(lang)
        if tok is None:
            from faster_whisper.tokenizer import Tokenizer

            model = self._model
            if not model.model.is_multilingual and lang != "en":
                raise AsrError(f"the model in {self.model_dir} is English-only; it cannot "
                               f"recognise {lang!r}", code="asr-language")
            try:
                tok = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=lang)
            except ValueError:
                raise AsrError(f"Whisper has no language {lang!r}", code="asr-language") from None
            self._tokenizers[lang] = tok
        return tok

    def _suppressed(self, tok) -> list[int]:
        return sorted({*tok.non_speech_tokens, tok.transcribe, tok.translate, tok.sot,
                       tok.sot_prev, tok.sot_lm, tok.no_speech})

    def _prompt(self, tok, lang: str, hints: tuple[str, ...]) -> list[int]:
        """[sot_prev, initial prompt...] + sot sequence + no_timestamps."""
        text = prompt_text(lang, hints)
        prompt = []
        if text:
            prompt = [tok.sot_prev, *tok.encode(" " + text)[:MAX_PROMPT_TOKENS]]
        return prompt + list(tok.sot_sequence) + [tok.no_timestamps]

    def _merge(self, pieces: list[_Piece], lang: str, hints, seconds: float, elapsed: float) -> Transcript:
        """Join the pieces of one utterance, dropping those that look invented."""
        verdicts = [self._reject(p, lang, hints) for p in pieces]
        kept = [p for p, why in zip(pieces, verdicts) if not why]
        sep = "" if lang.startswith("zh") else " "
        raw = sep.join(p.raw for p in pieces).strip()
        no_speech = sum(p.no_speech_prob for p in pieces) / len(pieces)
        if not kept:
            return Transcript("", raw, 0.0, round(no_speech, 3), lang, round(seconds, 3),
                              round(elapsed, 3), verdicts[0])
        text = asr_guards.tidy(sep.join(p.raw for p in kept), lang)
        tokens = sum(max(p.tokens, 1) for p in kept)
        logprob = sum(p.avg_logprob * max(p.tokens, 1) for p in kept) / tokens
        confidence = math.exp(logprob) * (1 - no_speech)
        return Transcript(normalize_numbers(text, lang), raw, round(confidence, 3), round(no_speech, 3),
                          lang, round(seconds, 3), round(elapsed, 3))

    def _reject(self, p: _Piece, lang: str, hints) -> str:
        if p.hit_cap or asr_guards.is_loop(p.raw):
            return "loop"
        if p.no_speech_prob > self.no_speech_max and p.avg_logprob < NO_SPEECH_LOGPROB:
            return "no-speech"
        if not asr_guards.bare(p.raw):
            return "no-speech"
        if asr_guards.is_echo(p.raw, ZH_PREAMBLE if lang.startswith("zh") else "", hints):
            return "echo"
        if asr_guards.is_hallucination(p.raw, p.no_speech_prob):
            return "hallucination"
        return ""


def prompt_text(lang: str, hints: tuple[str, ...]) -> str:
    """The initial prompt: the expected words, and for Mandarin a Simplified-Chinese preamble."""
    hints = tuple(h.strip() for h in hints if h and h.strip())
    if lang.startswith("zh"):
        return ZH_PREAMBLE + ("、".join(hints) + "。" if hints else "")
    return ", ".join(hints) + "." if hints else ""


def _token_cap(seconds: float) -> int:
    return min(220, int(TOKENS_PER_SECOND * seconds) + 8)


def _empty(lang: str, seconds: float, elapsed: float, reason: str) -> Transcript:
    return Transcript("", "", 0.0, 1.0, lang, round(seconds, 3), round(elapsed, 3), reason)


# --- the CLI: `ivr transcribe FILE.wav --lang en|zh` -------------------------------------------

def model_for(speech_cfg, lang: str) -> str:
    """The configured model name (or folder) for a language: asr_model_en for English if set."""
    return speech_cfg.asr_model_en if lang == "en" and speech_cfg.asr_model_en else speech_cfg.asr_model


def read_audio_16k(path: str | Path):
    """Any 16-bit PCM WAV (mono or stereo, any rate) as 16 kHz float32 mono."""
    import numpy as np

    from ivr.speech.audio import parse_wav, resample

    try:
        pcm = parse_wav(Path(path).read_bytes())
    except (OSError, ValueError) as e:
        raise IvrError(f"cannot read {path} as a 16-bit PCM WAV file: {getattr(e, 'strerror', None) or e}",
                       code="audio-unreadable") from None
    if pcm.rate < 4000:
        raise IvrError(f"{path}: sample rate {pcm.rate} Hz is too low for speech", code="audio-unreadable")
    return resample(pcm.samples, pcm.rate, RATE).astype(np.float32) / 32768.0


def transcribe_file(speech_cfg, path: str | Path, lang: str, hints: tuple[str, ...] = ()) -> dict:
    """Recognise a WAV file with the configured model (all CPU threads: one request)."""
    import os

    from ivr.speech.models import asr_model_path

    audio = read_audio_16k(path)
    model_dir = asr_model_path(speech_cfg, model_for(speech_cfg, lang))
    rec = WhisperRecognizer(model_dir, window=speech_cfg.asr_window, threads=min(4, os.cpu_count() or 1),
                            no_speech_max=speech_cfg.no_speech_max)
    t = rec.recognize(audio, lang, hints)
    keys = ("text", "raw", "lang", "confidence", "no_speech_prob", "audio_seconds", "elapsed_seconds")
    return {**{k: getattr(t, k) for k in keys}, "rejected": t.rejected}


# The pool lives in its own module; importing it last keeps `from ivr.speech.asr import AsrPool`
# working without a cycle at import time (asr_pool imports this module only inside functions).
from ivr.speech.asr_pool import AsrPool  # noqa: E402

__all__ = ["AsrPool", "Transcript", "WhisperRecognizer", "prompt_text", "read_audio_16k", "transcribe_file"]
