"""The live flow set: loaded once, hot-reloaded atomically, never replaced by a broken edit.

Calls hold the FlowSet they started with, so a swap never changes a call in progress.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Awaitable, Callable

from ivr.errors import FlowError, Problem
from ivr.flow.loader import discover, load_flows
from ivr.flow.model import FlowSet

_LOGGER = logging.getLogger(__name__)


class FlowRepository:
    def __init__(self, paths: list[str], *, queues_conf: str | None = None) -> None:
        self.paths = paths
        self.queues_conf = queues_conf
        self._current: FlowSet | None = None
        self._signature: tuple = ()
        self.last_problems: list[Problem] = []

    @property
    def current(self) -> FlowSet:
        if self._current is None:
            raise FlowError("no valid flow set is loaded", code="flow-not-loaded")
        return self._current

    def _stat(self) -> tuple:
        sig = []
        for path in discover(self.paths):
            try:
                st = os.stat(path)
                sig.append((path, st.st_mtime_ns, st.st_size))
            except OSError:
                sig.append((path, 0, 0))
        return tuple(sig)

    def load(self) -> FlowSet:
        """First load: errors are fatal, with every problem in the message."""
        self._signature = self._stat()
        result = load_flows(self.paths, queues_conf=self.queues_conf)
        self.last_problems = result.problems
        if result.flowset is None:
            raise FlowError("\n".join(str(p) for p in result.problems), code="flow-invalid")
        self._current = result.flowset
        return result.flowset

    def reload(self) -> bool:
        """Re-read if files changed. True when a new version was swapped in."""
        candidate = self.load_changed()
        if candidate is None:
            return False
        self.swap(candidate)
        return True

    def load_changed(self) -> FlowSet | None:
        """The edited flow set, when files changed and it is valid and new; nothing is swapped."""
        signature = self._stat()
        if signature == self._signature:
            return None
        self._signature = signature
        result = load_flows(self.paths, queues_conf=self.queues_conf)
        self.last_problems = result.problems
        if result.flowset is None:
            for problem in result.problems:
                _LOGGER.error("flow reload rejected: %s", problem)
            _LOGGER.error("keeping flow version %s", self._current.version if self._current else None)
            return None
        if self._current is not None and result.flowset.version == self._current.version:
            return None
        return result.flowset

    def swap(self, flowset: FlowSet) -> None:
        old = self._current.version if self._current else None
        self._current = flowset  # one reference swap: atomic for every reader
        _LOGGER.info("flows reloaded: %s -> %s", old, flowset.version)

    async def watch(self, interval: float = 1.0,
                    prepare: Callable[[FlowSet], Awaitable[None]] | None = None,
                    on_swap: Callable[[FlowSet], None] | None = None) -> None:
        """Poll for edits. A valid edit is `prepare`d (its prompts rendered, its intents
        embedded) before it is swapped in, so the first call on it waits for nothing; a failed
        preparation is logged and the edit goes live anyway (what is missing is made on first use)."""
        while True:
            await asyncio.sleep(interval)
            try:
                candidate = await asyncio.to_thread(self.load_changed)
            except Exception:
                _LOGGER.exception("flow reload failed; keeping the current version")
                continue
            if candidate is None:
                continue
            if prepare is not None:
                try:
                    await prepare(candidate)
                except Exception:
                    _LOGGER.exception("preparing flow version %s failed; swapping it in anyway",
                                      candidate.version)
            self.swap(candidate)
            if on_swap is not None:
                on_swap(candidate)
