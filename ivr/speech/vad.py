"""Silero VAD v6 (the ONNX file inside faster-whisper), run in streaming mode: one `VadStream` per
call keeps the model's recurrent state and the 64-sample context between 32 ms chunks, so each
chunk costs one small inference (~0.1 ms) instead of re-reading the utterance."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

RATE = 16000
CHUNK = 512  # samples the model takes at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous chunk it sees


class SileroVad:
    """The model, loaded once and shared by every call's stream (onnxruntime sessions are
    thread-safe for run())."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else None
        self._session = None
        self._lock = threading.Lock()

    def _load(self):
        if self._session is None:
            with self._lock:
                if self._session is None:
                    import onnxruntime

                    from ivr.speech.models import vad_model_path

                    opts = onnxruntime.SessionOptions()
                    opts.inter_op_num_threads = opts.intra_op_num_threads = 1
                    opts.log_severity_level = 4
                    self._session = onnxruntime.InferenceSession(
                        str(self.path or vad_model_path()), providers=["CPUExecutionProvider"],
                        sess_options=opts)
        return self._session

    def warm(self) -> None:
        self.stream().push(np.zeros(CHUNK, np.float32))

    def stream(self) -> "VadStream":
        return VadStream(self._load())


class VadStream:
    """Feed 16 kHz float samples in any sizes; get one speech probability per 512-sample chunk."""

    def __init__(self, session) -> None:
        self._session = session
        self._h = np.zeros((1, 1, 128), np.float32)
        self._c = np.zeros((1, 1, 128), np.float32)
        self._context = np.zeros(CONTEXT, np.float32)
        self._pending = np.zeros(0, np.float32)

    def push(self, samples: np.ndarray) -> list[tuple[float, np.ndarray]]:
        """Returns (probability, chunk) for every complete chunk, in order."""
        buf = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        out = []
        n = len(buf) // CHUNK
        for i in range(n):
            chunk = buf[i * CHUNK:(i + 1) * CHUNK]
            x = np.concatenate([self._context, chunk])[None, :]
            prob, self._h, self._c = self._session.run(None, {"input": x, "h": self._h, "c": self._c})
            self._context = chunk[-CONTEXT:]
            out.append((float(prob.reshape(-1)[0]), chunk))
        self._pending = buf[n * CHUNK:]
        return out
