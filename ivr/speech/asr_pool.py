"""The recogniser pool a live hotline shares: `asr_workers` recognitions at once on threads (one
CPU thread each; CTranslate2 releases the GIL), at most `asr_queue` waiting, and an answer or
an AsrError within `asr_timeout`. The event loop never blocks on a model."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ivr.errors import AsrError


DETECT_SHARE = 0.7  # another language must be this clearly ahead to switch a call to it


@dataclass
class _Job:
    audio: object
    lang: str
    hints: tuple[str, ...]
    detect: tuple[str, ...] = ()  # languages to choose from by ear before recognising
    state: str = "waiting"  # waiting -> running -> done, or waiting -> dropped (timed out first)
    queued_at: float = field(default_factory=time.monotonic)


class AsrPool:
    """One WhisperRecognizer per configured model, shared by `asr_workers` threads (one copy of
    the weights; CTranslate2 runs that many generate() calls in parallel)."""

    def __init__(self, speech_cfg) -> None:
        self.cfg = speech_cfg
        self.workers = max(1, int(speech_cfg.asr_workers))
        self.queue_limit = max(0, int(speech_cfg.asr_queue))
        self.timeout = float(speech_cfg.asr_timeout)
        self._recognizers: dict[str, object] = {}  # model folder -> WhisperRecognizer
        self._by_lang: dict[str, object] = {}  # language -> its recogniser, once resolved
        self._lock = threading.Lock()  # guards the counters and job states (worker threads touch them)
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="asr")
        self.queued = self.running = self.done = self.rejected = self.timed_out = self.failed = 0

    # --- models -------------------------------------------------------------------------------

    def recognizer(self, lang: str):
        """The recogniser for a language: asr_model_en for English when set, else asr_model.
        Resolving the path raises AsrModelMissingError (naming `ivr models install`)."""
        rec = self._by_lang.get(lang)
        if rec is not None:
            return rec
        from ivr.speech.asr import WhisperRecognizer, model_for
        from ivr.speech.models import asr_model_path

        folder = str(asr_model_path(self.cfg, model_for(self.cfg, lang)))  # reads the manifest: ~1 ms
        with self._lock:
            rec = self._recognizers.get(folder)
            if rec is None:
                rec = WhisperRecognizer(folder, window=self.cfg.asr_window, threads=1,
                                        workers=self.workers, no_speech_max=self.cfg.no_speech_max)
                self._recognizers[folder] = rec
            self._by_lang[lang] = rec
        return rec

    def warm(self) -> None:
        """Load every configured model now (blocking; run it with asyncio.to_thread)."""
        for lang in ("zh", "en"):
            self.recognizer(lang).warm(lang)

    # --- recognition --------------------------------------------------------------------------

    async def transcribe(self, audio, lang: str, hints: tuple[str, ...] = (), *,
                         detect: tuple[str, ...] = ()):
        """A Transcript, or AsrError asr-busy (at once, when `asr_queue` are already waiting) or
        asr-timeout (after `asr_timeout` s; the job is then dropped if it has not started).
        With `detect` (two or more languages), the language is chosen by ear first: the
        Transcript's `lang` says which (hints are kept only when it is `lang`)."""
        rec = self.recognizer(lang)  # a missing model fails here, before queueing
        job = _Job(audio, lang, tuple(hints), tuple(detect) if len(detect) > 1 else ())
        with self._lock:
            if self.queued >= self.queue_limit + self._idle_workers():
                self.rejected += 1
                raise AsrError(f"{self.queued} utterances are already waiting for recognition",
                               code="asr-busy")
            self.queued += 1
        future = asyncio.wrap_future(self._executor.submit(self._run, rec, job))
        try:
            return await asyncio.wait_for(future, self.timeout)  # cancels a job not yet started
        except asyncio.TimeoutError:
            self._drop(job, timed_out=True)
            raise AsrError(f"recognition took longer than {self.timeout:g} s", code="asr-timeout") from None
        except asyncio.CancelledError:
            self._drop(job)  # the caller hung up: don't spend a worker on it
            raise
        except AsrError:
            raise
        except Exception as e:  # a model failure must not take the call down with a traceback
            raise AsrError(f"recognition failed: {type(e).__name__}: {e}") from e

    def _idle_workers(self) -> int:
        return max(0, self.workers - self.running)

    def _drop(self, job: _Job, *, timed_out: bool = False) -> None:
        with self._lock:
            if job.state == "waiting":
                job.state = "dropped"
                self.queued -= 1
            self.timed_out += timed_out

    def _run(self, rec, job: _Job):
        with self._lock:
            if job.state != "waiting":
                return None  # timed out while queued: its caller has moved on
            job.state = "running"
            self.queued -= 1
            self.running += 1
        try:
            if job.detect:
                spoken, share = self.recognizer("detect").detect_language(job.audio, job.detect)
                if spoken != job.lang and share >= DETECT_SHARE:
                    return self.recognizer(spoken).recognize(job.audio, spoken, ())
            return rec.recognize(job.audio, job.lang, job.hints)
        except Exception:
            with self._lock:
                self.failed += 1
            raise
        finally:
            with self._lock:
                job.state = "done"
                self.running -= 1
                self.done += 1

    def counters(self) -> dict:
        with self._lock:
            return {"queued": self.queued, "running": self.running, "done": self.done,
                    "rejected": self.rejected, "timed_out": self.timed_out, "failed": self.failed}

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
