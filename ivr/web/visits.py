"""Caller sessions on the visual page, and the limits on verification attempts.

A visit starts when a link token is spent (a POST): a random 256-bit session token goes into an
HttpOnly SameSite=Strict cookie, and the server keeps only its sha256 with what it grants: one
call, the number the link went to, the customer of that call. A visit ends when its call ends,
after `idle` seconds without use, or at most after 2 hours.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable

MAX_VISITS = 5000
ABSOLUTE = 2 * 3600.0


@dataclass
class Visit:
    call_id: str
    phone: str
    lang: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    created: float = 0.0
    seen: float = 0.0
    verified: bool = False


class Visits:
    def __init__(self, *, idle: float = 1800.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle = idle
        self._clock = clock
        self._visits: "OrderedDict[str, Visit]" = OrderedDict()

    def open(self, call_id: str, phone: str, lang: str) -> str:
        token = secrets.token_urlsafe(32)
        now = self._clock()
        self._visits[_digest(token)] = Visit(call_id, phone, lang, created=now, seen=now)
        while len(self._visits) > MAX_VISITS:
            self._visits.popitem(last=False)
        return token

    def get(self, token: str | None) -> Visit | None:
        if not token or len(token) > 128:
            return None
        key = _digest(token)
        visit = self._visits.get(key)
        if visit is None:
            return None
        now = self._clock()
        if now - visit.seen > self.idle or now - visit.created > ABSOLUTE:
            del self._visits[key]
            return None
        visit.seen = now
        return visit

    def end_call(self, call_id: str) -> int:
        """The call is over: every visit of it ends (its page says so and opens nothing more)."""
        keys = [k for k, v in self._visits.items() if v.call_id == call_id]
        for key in keys:
            del self._visits[key]
        return len(keys)

    def __len__(self) -> int:
        return len(self._visits)


class AttemptLimit:
    """At most `limit` failed attempts per key (a phone number, an IP) within `window` seconds."""

    def __init__(self, limit: int, window: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._failures: "OrderedDict[str, deque]" = OrderedDict()

    def retry_after(self, key: str) -> int:
        tries = self._failures.get(key)
        if not tries:
            return 0
        now = self._clock()
        while tries and now - tries[0] >= self.window:
            tries.popleft()
        if len(tries) < self.limit:
            return 0
        return max(1, int(self.window - (now - tries[0])) + 1)

    def failed(self, key: str) -> None:
        tries = self._failures.setdefault(key, deque())
        self._failures.move_to_end(key)
        tries.append(self._clock())
        while len(self._failures) > 10000:
            self._failures.popitem(last=False)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
