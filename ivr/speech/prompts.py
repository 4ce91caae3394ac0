"""The prompt cache: text (or a recorded file) rendered once into the pair of files Asterisk plays.

`await cache.render(text, lang)` returns `<dir>/<lang>/<key>` without an extension; beside it are
`<key>.wav` (8 kHz mono 16-bit) and `<key>.sln16` (16 kHz raw), as STREAM FILE wants. The key is a
hash of the voice, the language and the text, so a changed voice or text renders anew and an
unchanged one is never rendered twice (not even by concurrent calls). Files are written to a temp
name and renamed, mode 0644 in 0755 folders: Asterisk runs as another user and must read them.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from ivr.flow.prompts import placeholders
from ivr.errors import TtsError, TtsUnavailableError
from ivr.speech.audio import SLN16_RATE, WAV_RATE, staged, wav_seconds, write_prompt_pair
from ivr.speech.tts import Synthesizer, clean_text

DIR_MODE = 0o755
KEY_CHARS = 24


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])")
MIN_PART_CHARS = 8  # shorter sentences ride with the next one ("OK." "Again,")
PRERENDER_WORKERS = max(1, (os.cpu_count() or 2) // 2)  # the other cores are the calls'


def split_sentences(text: str) -> list[str]:
    """`text` cut after each sentence's end (. ! ? and 。！？); short pieces joined to the next."""
    parts: list[str] = []
    carry = ""
    for piece in _SENTENCE_END.split(text.strip()):
        carry = f"{carry} {piece}".strip() if carry and not _CJK_END.search(carry) else carry + piece
        if len(carry) >= MIN_PART_CHARS:
            parts.append(carry)
            carry = ""
    if carry:
        if parts:
            parts[-1] = parts[-1] + ("" if _CJK_END.search(parts[-1]) else " ") + carry
        else:
            parts.append(carry)
    return [p for p in parts if p.strip()]


_CJK_END = re.compile(r"[。！？]$")


def duration(path: str | Path) -> float:
    """Seconds of a rendered prompt; `path` with or without the .wav extension."""
    p = Path(path)
    if p.suffix != ".wav":
        p = p.with_name(p.name + ".wav")
    return wav_seconds(p)


class PromptCache:
    def __init__(self, directory: str | Path, synthesizer: Synthesizer, *,
                 flows_dir: str | Path | None = None, sox: str = "sox", sox_timeout: float = 60.0) -> None:
        self.dir = Path(directory)
        self.synthesizer = synthesizer
        self.flows_dir = Path(flows_dir) if flows_dir is not None else None
        self.sox = sox
        self.sox_timeout = sox_timeout
        self._pending: dict[Path, asyncio.Future[Path]] = {}
        self.rendered = 0  # renders actually done (not served from disk or joined): for tests/stats
        self._count_lock = threading.Lock()
        self._audio_keys: dict[tuple, Path] = {}
        self._known: dict[tuple[str, str], Path] = {}  # (text, lang) -> a base known to be complete
        self._chains: set[asyncio.Task] = set()  # sentence renders still running (render_parts)

    # ---- keys and paths -------------------------------------------------------------------
    def _lang_dir(self, lang: str) -> Path:
        if not lang or not lang.replace("-", "").replace("_", "").isalnum():
            raise TtsError(f"bad language code {lang!r}", code="tts-no-voice")
        return self.dir / lang

    def path_for(self, text: str, lang: str) -> Path:
        """Where `text` in `lang` is (or will be) cached, without extension. Pure: renders nothing."""
        text = clean_text(text)
        voice = self.synthesizer.voice_id(lang)
        digest = hashlib.sha256(f"{voice}\0{lang}\0{text}".encode("utf-8")).hexdigest()
        return self._lang_dir(lang) / digest[:KEY_CHARS]

    def audio_source(self, audio: str | Path) -> Path:
        """A recorded prompt's file: relative paths are relative to the flows folder."""
        p = Path(audio)
        if not p.is_absolute():
            if self.flows_dir is None:
                raise TtsError(f"recorded prompt {str(audio)!r} is relative but no flows folder is set",
                               code="tts-audio-missing")
            p = self.flows_dir / p
        p = p.resolve()
        if not p.is_file():
            raise TtsError(f"recorded prompt {str(audio)!r} not found (looked at {p})", code="tts-audio-missing")
        return p

    def path_for_audio(self, source: Path, lang: str) -> Path:
        """Cache path of a recorded file: keyed by its content, so an edited recording re-converts.
        The content hash is remembered per (file, size, mtime), so a hot prompt is not re-read per call."""
        st = source.stat()
        memo = (str(source), lang, st.st_size, st.st_mtime_ns)
        if memo in self._audio_keys:
            return self._audio_keys[memo]
        h = hashlib.sha256(b"recording\0" + lang.encode() + b"\0")
        with open(source, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        base = self._audio_keys[memo] = self._lang_dir(lang) / ("rec-" + h.hexdigest()[:KEY_CHARS])
        return base

    # ---- rendering ------------------------------------------------------------------------
    @staticmethod
    def _complete(base: Path) -> bool:
        # the .wav is renamed into place last, so it existing means the pair is whole
        return base.with_name(base.name + ".wav").is_file() and base.with_name(base.name + ".sln16").is_file()

    def _mkdirs(self, d: Path) -> None:
        for p in (self.dir, d):
            if not p.is_dir():
                p.mkdir(parents=True, exist_ok=True)
                try:
                    os.chmod(p, DIR_MODE)
                except PermissionError:  # a folder someone else made meanwhile
                    pass

    def cached(self, text: str, lang: str) -> Path | None:
        """The rendered prompt if it is on disk already (no rendering), else None."""
        known = self._known.get((text, lang))
        if known is not None:
            return known
        base = self.path_for(text, lang)
        return base if self._complete(base) else None

    async def render_parts(self, text: str, lang: str):
        """The prompt as files to play one after another, each yielded as soon as it is
        rendered: one file when it is cached (every static prompt is) or a single sentence;
        otherwise sentence by sentence, so a long dynamic prompt starts playing when its first
        sentence is ready instead of when the whole is. The sentences render in order, in the
        background; ones the caller never hears (they interrupted) are still cached."""
        parts = split_sentences(text) if self.cached(text, lang) is None else [text]
        if len(parts) < 2:
            yield await self.render(text, lang)
            return
        loop = asyncio.get_running_loop()
        ready = [loop.create_future() for _ in parts]

        async def one_after_another() -> None:  # in order: worker threads would race for the voice
            for part, done in zip(parts, ready):
                try:
                    done.set_result(await self.render(part, lang))
                except Exception as exc:  # noqa: BLE001 - handed to whoever plays that part
                    done.set_exception(exc)

        chain = asyncio.ensure_future(one_after_another())
        self._chains.add(chain)
        chain.add_done_callback(self._chains.discard)
        try:
            for done in ready:
                yield await asyncio.shield(done)
        finally:
            for done in ready:  # consumed or abandoned: no "exception never retrieved"
                done.add_done_callback(lambda f: f.cancelled() or f.exception())

    async def render(self, text: str, lang: str, *, audio: str | Path | None = None) -> Path:
        """Path (no extension) of the rendered prompt; renders at most once per key, off the loop.
        With `audio`, that recorded file (converted with sox) stands in for the synthesized text."""
        if audio:
            source = await asyncio.to_thread(self.audio_source, audio)
            base = await asyncio.to_thread(self.path_for_audio, source, lang)
            work = lambda: self._convert_sync(source, base)  # noqa: E731
        else:
            known = self._known.get((text, lang))
            if known is not None:  # rendered files are never removed under us: no stat, no hash
                return known
            base = self.path_for(text, lang)
            work = lambda: self._synthesize_sync(text, lang, base)  # noqa: E731
        if self._complete(base):
            if not audio and len(self._known) < 100_000:
                self._known[(text, lang)] = base
            return base
        pending = self._pending.get(base)
        if pending is None:
            pending = asyncio.ensure_future(asyncio.to_thread(work))
            self._pending[base] = pending
            pending.add_done_callback(lambda _f, b=base: self._pending.pop(b, None))
        # shield: one caller giving up (hung up) must not cancel the render others wait for
        return await asyncio.shield(pending)

    def _synthesize_sync(self, text: str, lang: str, base: Path) -> Path:
        if self._complete(base):  # another process rendered it meanwhile
            return base
        pcm = self.synthesizer.synthesize(text, lang)
        self._mkdirs(base.parent)
        write_prompt_pair(base, pcm)
        self._count()
        return base

    def _convert_sync(self, source: Path, base: Path) -> Path:
        if self._complete(base):
            return base
        exe = shutil.which(self.sox)
        if exe is None:
            raise TtsUnavailableError(f"{self.sox} is not installed or not on PATH; install it with "
                                      f"`apt-get install sox` (./setup.sh does this)")
        self._mkdirs(base.parent)
        out = {".sln16": ["-t", "raw", "-r", str(SLN16_RATE)], ".wav": ["-t", "wav", "-r", str(WAV_RATE)]}
        for ext in (".sln16", ".wav"):  # .wav last: it marks the pair complete
            target = base.with_name(base.name + ext)
            with staged(target) as tmp:
                # source is absolute (never "-", "-n" or "|cmd", which sox would treat specially)
                argv = [exe, "-q", "-G", str(source), *out[ext], "-c", "1", "-b", "16",
                        "-e", "signed-integer", "-L", tmp]
                try:
                    proc = subprocess.run(argv, capture_output=True, timeout=self.sox_timeout, shell=False)
                except subprocess.TimeoutExpired:
                    raise TtsError(f"sox took longer than {self.sox_timeout:g}s on {source}",
                                   code="tts-timeout") from None
                if proc.returncode != 0:
                    err = proc.stderr.decode("utf-8", "replace").strip()[:300]
                    raise TtsError(f"sox cannot convert recorded prompt {source}: {err}", code="tts-audio-bad")
        self._count()
        return base

    def _count(self) -> None:
        with self._count_lock:
            self.rendered += 1

    async def prerender(self, texts: Iterable[tuple[str, str] | Mapping], *, workers: int = PRERENDER_WORKERS) -> list[Path]:
        """Warm the cache. Items are (text, lang) pairs or prompt mappings {en: .., zh: .., audio: {en: file}}
        (every language in the mapping is rendered; a recording replaces its language's text). Texts with
        {placeholders} are skipped: they are rendered per call, once filled in.

        At most `workers` renders run at once: a call's own render must never queue behind
        hundreds of them in the shared thread pool (a cold cache once kept a caller waiting 27 s)."""
        limit = asyncio.Semaphore(max(1, workers))

        async def limited(job):
            async with limit:
                return await job

        jobs = []
        for item in texts:
            if isinstance(item, Mapping):
                audio = item.get("audio") if isinstance(item.get("audio"), Mapping) else {}
                for lang, text in item.items():
                    if lang != "audio" and isinstance(text, str) and (audio.get(lang) or not placeholders(text)):
                        jobs.append(self.render(text, lang, audio=audio.get(lang)))
            else:
                text, lang = item
                jobs.append(self.render(text, lang))
        return list(await asyncio.gather(*(limited(job) for job in jobs)))

    def duration(self, path: str | Path) -> float:
        return duration(path)
