"""Caller sessions on the visual page.

A visit starts when a link token is spent (a POST): a session (ivr.web.sessions) that grants one
call, the number the link went to, and the customer of that call. A visit ends when its call
ends, after `idle` seconds without use, or at most after 2 hours.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Callable

from ivr.web.sessions import Sessions

MAX_VISITS = 5000
ABSOLUTE = 2 * 3600.0


@dataclass
class Visit:
    call_id: str
    phone: str
    lang: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    verified: bool = False


class Visits:
    def __init__(self, *, idle: float = 1800.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._sessions: Sessions[Visit] = Sessions(idle=idle, absolute=ABSOLUTE, limit=MAX_VISITS, clock=clock)

    def open(self, call_id: str, phone: str, lang: str) -> str:
        return self._sessions.open(Visit(call_id, phone, lang))

    def get(self, token: str | None) -> Visit | None:
        return self._sessions.get(token)

    def end_call(self, call_id: str) -> int:
        """The call is over: every visit of it ends (its page says so and opens nothing more)."""
        return self._sessions.close_where(lambda visit: visit.call_id == call_id)

    def __len__(self) -> int:
        return len(self._sessions)
