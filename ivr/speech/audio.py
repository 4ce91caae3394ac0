"""Audio helpers: parse WAV bytes, resample 16-bit mono PCM, write the files Asterisk plays.

Asterisk plays `<name>.wav` (8 kHz mono 16-bit) and `<name>.sln16` (16 kHz raw signed linear,
little-endian, no header); STREAM FILE names them without the extension and picks the best one for
the channel. Everything here is numpy + the standard library `wave` (no audioop: deprecated).
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
import wave
from dataclasses import dataclass
from functools import lru_cache
from math import gcd
from pathlib import Path

import numpy as np

WAV_RATE = 8000
SLN16_RATE = 16000
FILE_MODE = 0o644


@dataclass(frozen=True, slots=True)
class Pcm:
    """16-bit signed mono PCM (little-endian bytes) at `rate` samples a second."""

    data: bytes
    rate: int

    @property
    def samples(self) -> np.ndarray:
        return np.frombuffer(self.data, dtype="<i2")

    @property
    def seconds(self) -> float:
        return len(self.data) / 2 / self.rate


def parse_wav(blob: bytes) -> Pcm:
    """A RIFF/WAVE blob as mono 16-bit PCM. Tolerates the bogus sizes streaming writers put in
    the header (espeak-ng --stdout writes 0x7fffffff): the data chunk runs to the end of the blob."""
    if len(blob) < 12 or blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE stream")
    pos, fmt = 12, None
    while pos + 8 <= len(blob):
        cid, size = blob[pos:pos + 4], struct.unpack("<I", blob[pos + 4:pos + 8])[0]
        body = pos + 8
        if cid == b"fmt ":
            fmt = struct.unpack("<HHIIHH", blob[body:body + 16])
        elif cid == b"data":
            if fmt is None:
                raise ValueError("WAV data before fmt chunk")
            tag, channels, rate, _, _, bits = fmt
            if tag != 1 or bits != 16:
                raise ValueError(f"WAV is not 16-bit PCM (format {tag}, {bits} bits)")
            data = blob[body:body + size] if body + size <= len(blob) else blob[body:]
            data = data[: len(data) - len(data) % (2 * channels)]
            samples = np.frombuffer(data, dtype="<i2")
            if channels > 1:
                samples = samples.reshape(-1, channels).mean(axis=1).round().astype("<i2")
            return Pcm(samples.astype("<i2").tobytes(), rate)
        pos = body + size + (size & 1)
    raise ValueError("WAV has no data chunk")


@lru_cache(maxsize=16)
def _design(up: int, down: int, taps_per_phase: int) -> np.ndarray:
    """A Kaiser-windowed sinc low-pass for the up-sampled rate, arranged as (phase, tap)."""
    n = taps_per_phase * up
    cutoff = 0.5 / max(up, down) * 0.9  # cycles per up-sampled sample; 10% guard band
    t = np.arange(n) - (n - 1) / 2
    h = 2 * cutoff * np.sinc(2 * cutoff * t) * np.kaiser(n, 8.6) * up
    return h.reshape(taps_per_phase, up).T.astype(np.float32)  # [phase, k] = h[phase + k*up]


def resample(samples: np.ndarray, src_rate: int, dst_rate: int, *, quality: int = 48) -> np.ndarray:
    """Polyphase FIR resampling of int16 (or float) mono samples; returns int16.

    Output sample m sits at input time m*src/dst; its value is the band-limited interpolation
    with the anti-alias cut-off just below the lower of the two Nyquist frequencies. Output
    length is round(len * dst / src)."""
    x = np.asarray(samples, dtype=np.float32)
    if src_rate == dst_rate:
        return np.clip(np.round(x), -32768, 32767).astype(np.int16)
    g = gcd(src_rate, dst_rate)
    up, down = dst_rate // g, src_rate // g
    # the filter spans `quality` samples at the lower rate: down-sampling needs more input taps
    taps_per_phase = int(np.ceil(quality * max(1.0, down / up)))
    bank = _design(up, down, taps_per_phase)
    n_out = int(round(len(x) * up / down))
    # pad so every tap window lies inside the array; delay of the filter is (n-1)/2 up-sampled samples
    padded = np.concatenate([np.zeros(taps_per_phase, np.float32), x, np.zeros(taps_per_phase, np.float32)])
    delay = (taps_per_phase * up - 1) / 2
    out = np.empty(n_out, dtype=np.float32)
    k = np.arange(taps_per_phase)
    for start in range(0, n_out, 8192):  # bounded memory for long prompts
        m = np.arange(start, min(n_out, start + 8192))
        pos = m * down + int(round(delay))  # position in the up-sampled stream, delay compensated
        base, phase = pos // up, pos % up
        idx = base[:, None] - k[None, :] + taps_per_phase  # input index for tap k
        out[start:start + len(m)] = np.einsum("ij,ij->i", padded[idx], bank[phase])
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


@contextlib.contextmanager
def staged(path: Path):
    """A temp file beside `path` to write; on success it becomes `path` (0644, renamed into
    place, so readers never see half a file), on any error it is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _atomic_write(path: Path, data: bytes | None = None, *, writer=None) -> None:
    """Write to a temp file in the same folder, chmod 0644, then rename over `path`."""
    with staged(path) as tmp, open(tmp, "wb") as f:
        if writer is not None:
            writer(f)
        else:
            f.write(data or b"")
        f.flush()
        os.fsync(f.fileno())


def write_wav(path: Path, samples: np.ndarray, rate: int = WAV_RATE) -> None:
    """A mono 16-bit WAV, written atomically with mode 0644."""
    pcm = np.asarray(samples, dtype="<i2").tobytes()

    def writer(f):
        with wave.open(f, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(pcm)

    _atomic_write(Path(path), writer=writer)


def write_sln16(path: Path, samples: np.ndarray) -> None:
    """Raw 16 kHz signed linear little-endian (Asterisk's .sln16), atomically with mode 0644."""
    _atomic_write(Path(path), np.asarray(samples, dtype="<i2").tobytes())


def write_prompt_pair(base: Path, pcm: Pcm) -> None:
    """`<base>.sln16` (16 kHz) then `<base>.wav` (8 kHz) from one PCM buffer. The .wav goes last,
    so its presence means the pair is complete."""
    base = Path(base)
    x = pcm.samples
    write_sln16(base.with_name(base.name + ".sln16"), resample(x, pcm.rate, SLN16_RATE))
    write_wav(base.with_name(base.name + ".wav"), resample(x, pcm.rate, WAV_RATE), WAV_RATE)


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


def read_wav(path: Path) -> Pcm:
    return parse_wav(Path(path).read_bytes())


def silence(seconds: float, rate: int) -> Pcm:
    return Pcm(b"\0\0" * int(round(seconds * rate)), rate)
