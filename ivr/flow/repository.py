"""The live flow set: loaded once, hot-reloaded atomically, never replaced by a broken edit.

Calls hold the FlowSet they started with, so a swap never changes a call in progress.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Callable

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
        signature = self._stat()
        if signature == self._signature:
            return False
        self._signature = signature
        result = load_flows(self.paths, queues_conf=self.queues_conf)
        self.last_problems = result.problems
        if result.flowset is None:
            for problem in result.problems:
                _LOGGER.error("flow reload rejected: %s", problem)
            _LOGGER.error("keeping flow version %s", self._current.version if self._current else None)
            return False
        if self._current is not None and result.flowset.version == self._current.version:
            return False
        old = self._current.version if self._current else None
        self._current = result.flowset  # one reference swap: atomic for every reader
        _LOGGER.info("flows reloaded: %s -> %s", old, result.flowset.version)
        return True

    async def watch(self, interval: float = 1.0, on_swap: Callable[[FlowSet], None] | None = None) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                swapped = await asyncio.to_thread(self.reload)
            except Exception:
                _LOGGER.exception("flow reload failed; keeping the current version")
                continue
            if swapped and on_swap is not None:
                on_swap(self.current)
