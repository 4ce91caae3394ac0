"""What the admin sign-in and the callers' visits share: server-side sessions behind a cookie,
and a limit on failed attempts per key.

A session's cookie holds a random 256-bit token; the server keeps only its sha256 with what the
session grants. A session ends after `idle` seconds without use, after `absolute` seconds in
any case, when it is closed, or when the table is full (the oldest first). Everything lives in
memory: a restart ends every session.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict, deque
from typing import Callable, Generic, TypeVar

T = TypeVar("T")
MAX_TOKEN_CHARS = 128  # a longer cookie value is not one of ours: no hashing of junk


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions(Generic[T]):
    def __init__(self, *, idle: float, absolute: float, limit: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.idle = idle
        self.absolute = absolute
        self.limit = limit
        self._clock = clock
        self._table: "OrderedDict[str, tuple[T, float, list[float]]]" = OrderedDict()  # grant, created, [seen]

    def open(self, grant: T) -> str:
        """A new session for `grant`; returns the token for the cookie."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        self._table[token_digest(token)] = (grant, now, [now])
        while len(self._table) > self.limit:
            self._table.popitem(last=False)
        return token

    def get(self, token: str | None) -> T | None:
        """The grant of a live session (its idle time restarts), else None."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        key = token_digest(token)
        found = self._table.get(key)
        if found is None:
            return None
        grant, created, seen = found
        now = self._clock()
        if now - seen[0] > self.idle or now - created > self.absolute:
            del self._table[key]
            return None
        seen[0] = now
        self._table.move_to_end(key)
        return grant

    def close(self, token: str | None) -> None:
        if token:
            self._table.pop(token_digest(token), None)

    def close_where(self, test: Callable[[T], bool]) -> int:
        """End every session whose grant passes `test`; how many ended."""
        keys = [k for k, (grant, _c, _s) in self._table.items() if test(grant)]
        for key in keys:
            del self._table[key]
        return len(keys)

    def __len__(self) -> int:
        return len(self._table)


class AttemptLimit:
    """At most `limit` failed attempts per key (a phone number, an IP) within `window` seconds."""

    def __init__(self, limit: int, window: float, *, clock: Callable[[], float] = time.monotonic,
                 tracked: int = 10000) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._tracked = tracked
        self._failures: "OrderedDict[str, deque]" = OrderedDict()

    def retry_after(self, key: str) -> int:
        """Seconds `key` must wait before another try (0: it may try now)."""
        tries = self._failures.get(key)
        if not tries:
            return 0
        now = self._clock()
        while tries and now - tries[0] >= self.window:
            tries.popleft()
        if not tries:
            del self._failures[key]
            return 0
        if len(tries) < self.limit:
            return 0
        return max(1, int(self.window - (now - tries[0])) + 1)

    def failed(self, key: str) -> int:
        """Count a failure; how many `key` has in the window now."""
        tries = self._failures.setdefault(key, deque())
        self._failures.move_to_end(key)
        tries.append(self._clock())
        while len(self._failures) > self._tracked:
            self._failures.popitem(last=False)
        return len(tries)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)
