"""Online voices: edge-tts (Microsoft Edge's read-aloud service), for pre-rendering static prompts
only, never during a call.

Two things must hold before it is tried, both checked once per process and remembered:
  * an MP3 decoder: edge-tts only returns MP3 (audio-24khz-48kbitrate-mono-mp3). sox decodes it
    if it was built with MP3 support, else ffmpeg; with neither, edge-tts is unavailable.
  * the service is reachable: a TCP connection and a verified TLS handshake with it (or a TCP
    connection to the HTTPS proxy, if one is set) within 1.5 s in total, name lookup included.
    TCP alone proves nothing where an egress filter accepts every connection (this box's does).
After the first failed synthesis, edge-tts counts as unavailable for the rest of the process, so a
service that accepts connections but does not answer costs one timeout, not one per prompt.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from urllib.parse import urlsplit

from ivr.errors import TtsError, TtsUnavailableError
from ivr.speech.audio import Pcm, parse_wav, silence
from ivr.speech.tts import clean_text

HOST = "speech.platform.bing.com"
PORT = 443
REACH_TIMEOUT = 1.5

_lock = threading.Lock()
_reach: dict[tuple[str, int], bool] = {}
_decoder: list[list[str] | None] = []  # [argv] once probed; argv None when there is no decoder


def reachable(host: str = HOST, port: int = PORT, *, timeout: float = REACH_TIMEOUT) -> bool:
    """Whether a TCP connection to host:port (or to the configured HTTPS proxy) opens within
    `timeout` seconds, name lookup included. Cached for the process."""
    tls_name: str | None = host
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    if proxy:
        parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if parts.hostname:
            host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
            tls_name = None
    key = (host, port)
    with _lock:
        if key in _reach:
            return _reach[key]
    result: list[bool] = []

    def probe() -> None:
        deadline = time.monotonic() + timeout
        try:
            # getaddrinfo has no timeout of its own: the join below bounds it
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            for family, kind, proto, _, addr in infos:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    with socket.socket(family, kind, proto) as s:
                        s.settimeout(left)
                        s.connect(addr)
                        if tls_name is not None:
                            s.settimeout(max(0.01, deadline - time.monotonic()))
                            with ssl.create_default_context().wrap_socket(s, server_hostname=tls_name):
                                pass
                        result.append(True)
                        return
                except (OSError, ssl.SSLError):
                    continue
        except OSError:
            pass

    t = threading.Thread(target=probe, name="edge-tts-reach", daemon=True)
    t.start()
    t.join(timeout)
    ok = bool(result)
    with _lock:
        _reach[key] = ok
    return ok


def mp3_decoder() -> list[str] | None:
    """argv of a command that reads MP3 on stdin and writes 16-bit mono WAV on stdout, or None."""
    with _lock:
        if _decoder:
            return _decoder[0]
    argv = None
    sox = shutil.which("sox")
    if sox:
        try:
            out = subprocess.run([sox, "-h"], capture_output=True, timeout=5).stdout.decode("utf-8", "replace")
            formats = next((line for line in out.splitlines() if line.startswith("AUDIO FILE FORMATS")), "")
            if "mp3" in formats.split():
                argv = [sox, "-q", "-t", "mp3", "-", "-t", "wav", "-b", "16", "-e", "signed-integer", "-c", "1", "-"]
        except (OSError, subprocess.TimeoutExpired):
            pass
    ffmpeg = shutil.which("ffmpeg")
    if argv is None and ffmpeg:
        argv = [ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "mp3", "-i", "pipe:0",
                "-ac", "1", "-acodec", "pcm_s16le", "-f", "wav", "pipe:1"]
    with _lock:
        if not _decoder:
            _decoder.append(argv)
        return _decoder[0]


_failed: list[str] = []  # why edge-tts failed once in this process


def mark_failed(why: str) -> None:
    """Stop trying edge-tts for the rest of the process (called after a failed synthesis)."""
    with _lock:
        if not _failed:
            _failed.append(why)


def available() -> tuple[bool, str]:
    """(True, "") when edge-tts can be used now, else (False, why). Cached for the process."""
    if _failed:
        return False, f"it failed earlier in this process ({_failed[0]})"
    if importlib.util.find_spec("edge_tts") is None:
        return False, "edge-tts is not installed"
    if mp3_decoder() is None:
        return False, "no MP3 decoder (this sox has no MP3 support and ffmpeg is not installed)"
    if not reachable():
        return False, f"{HOST} is not reachable (no network?)"
    return True, ""


def _reset_for_tests() -> None:
    with _lock:
        _reach.clear()
        _decoder.clear()
        _failed.clear()


class EdgeSynthesizer:
    """edge-tts voices by language, e.g. {"en": "en-US-AriaNeural", "zh": "zh-CN-XiaoxiaoNeural"}.
    `synthesize` raises TtsUnavailableError when the service or an MP3 decoder is missing."""

    def __init__(self, voices: dict[str, str], *, timeout: float = 30.0) -> None:
        self.voices = {str(k): str(v) for k, v in (voices or {}).items()}
        self.timeout = float(timeout)

    def voice_id(self, lang: str) -> str:
        return f"edge-tts:{self._voice(lang)}"

    def _voice(self, lang: str) -> str:
        try:
            return self.voices[lang]
        except KeyError:
            raise TtsError(f"no edge-tts voice for language {lang!r} (speech.edge_voices has: "
                           f"{', '.join(sorted(self.voices)) or 'none'})", code="tts-no-voice") from None

    def synthesize(self, text: str, lang: str) -> Pcm:
        text = clean_text(text)
        voice = self._voice(lang)
        if not text:
            return silence(0.2, 24000)
        ok, why = available()
        if not ok:
            raise TtsUnavailableError(f"edge-tts unavailable: {why}")
        mp3 = self._fetch(text, voice)
        return self._decode(mp3)

    def _fetch(self, text: str, voice: str) -> bytes:
        import edge_tts

        async def run() -> bytes:
            audio = bytearray()
            comm = edge_tts.Communicate(text, voice, connect_timeout=5, receive_timeout=int(self.timeout))
            async for chunk in comm.stream():
                if chunk.get("type") == "audio":
                    audio.extend(chunk["data"])
            return bytes(audio)

        box: list = []

        def worker() -> None:  # its own thread: asyncio.run refuses to nest in a running loop
            try:
                box.append(asyncio.run(asyncio.wait_for(run(), self.timeout)))
            except BaseException as e:  # noqa: BLE001 - reported below
                box.append(e)

        t = threading.Thread(target=worker, name="edge-tts", daemon=True)
        t.start()
        t.join(self.timeout + 5)
        if not box:
            raise TtsError(f"edge-tts took longer than {self.timeout:g}s", code="tts-timeout")
        if isinstance(box[0], BaseException):
            e = box[0]
            raise TtsUnavailableError(f"edge-tts failed: {type(e).__name__}: {e}") from None
        if not box[0]:
            raise TtsUnavailableError("edge-tts returned no audio")
        return box[0]

    def _decode(self, mp3: bytes) -> Pcm:
        argv = mp3_decoder()
        if argv is None:
            raise TtsUnavailableError("edge-tts unavailable: no MP3 decoder")
        try:
            proc = subprocess.run(argv, input=mp3, capture_output=True, timeout=60, shell=False)
        except subprocess.TimeoutExpired:
            raise TtsError("decoding edge-tts MP3 took longer than 60s", code="tts-timeout") from None
        if proc.returncode != 0:
            raise TtsError(f"cannot decode edge-tts MP3: {proc.stderr.decode('utf-8', 'replace')[:300]}")
        try:
            return parse_wav(proc.stdout)
        except ValueError as e:
            raise TtsError(f"edge-tts MP3 decoded to no usable audio: {e}") from None
