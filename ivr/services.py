"""What a call may ask of the outside world, as small interfaces with on-box defaults.

Later issues plug in the SQLite store, AstDB flags, the SMS gateway and web verification here;
the engine only sees these Protocols.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any, Callable, Protocol
from zoneinfo import ZoneInfo

_LOGGER = logging.getLogger(__name__)


class CustomerDirectory(Protocol):
    async def profile(self, phone: str) -> dict[str, Any] | None: ...
    async def find(self, kind: str, number: str) -> dict[str, Any] | None: ...
    async def update(self, kind: str, number: str, changes: dict[str, Any]) -> None: ...


class FlagProvider(Protocol):
    def get(self, name: str) -> str | None: ...
    def all(self) -> dict[str, str]: ...


class SmsGateway(Protocol):
    async def send_link(self, call_id: str, to: str, purpose: str, lang: str = "en") -> str:
        """Text `to` a link to this call's page; returns the link. Never waits on delivery."""


class PredictionOutcomes(Protocol):
    async def outcomes(self, names: list[str]) -> dict[str, tuple[int, int]]:
        """(asked, right) per proactive rule name, over earlier calls."""


class Verifier(Protocol):
    """The knowledge factors (`dob`, `id_last4`) against the customer's record. The keypad
    `verify` step asks it directly; the visual page's methods wrap it (ivr.verification)."""

    async def check(self, profile: dict[str, Any], method: str, answer: str) -> bool: ...


class StaticFlags:
    """Admin flags from config.yaml, for when AstDB is not wired in (simulator, tests)."""

    def __init__(self, flags: dict[str, Any] | None = None) -> None:
        self._flags = {str(k): str(v) for k, v in (flags or {}).items()}

    def get(self, name: str) -> str | None:
        return self._flags.get(name)

    def all(self) -> dict[str, str]:
        return dict(self._flags)

    def set(self, name: str, value: str | None) -> None:
        if value is None:
            self._flags.pop(name, None)
        else:
            self._flags[name] = str(value)


class BusinessCalendar:
    """Opening hours by weekday plus a public-holiday calendar (the `holidays` package)."""

    DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

    def __init__(self, hours: dict[str, str], timezone: str = "UTC", country: str = "",
                 extra_holidays: tuple = (), extra_workdays: tuple = (),
                 now: Callable[[], datetime] | None = None) -> None:
        self._tz = ZoneInfo(timezone)
        self._hours = {d: tuple(time.fromisoformat(x) for x in span.split("-"))
                       for d, span in hours.items()}
        self._country = country
        self._extra = {date.fromisoformat(d) for d in extra_holidays}
        self._workdays = {date.fromisoformat(d) for d in extra_workdays}
        self._holidays: Any = None
        self._now = now

    def now(self) -> datetime:
        return self._now() if self._now else datetime.now(self._tz)

    def is_holiday(self, when: datetime) -> bool:
        day = when.date()
        if day in self._workdays:
            return False
        if day in self._extra:
            return True
        if not self._country:
            return False
        if self._holidays is None:
            import holidays  # heavy-ish: only when a flow asks

            self._holidays = holidays.country_holidays(self._country)
        return day in self._holidays

    def is_open(self, when: datetime) -> bool:
        if self.is_holiday(when):
            return False
        span = self._hours.get(self.DAYS[when.weekday()])
        if span is None and when.date() in self._workdays:
            span = self._hours.get("mon")
        return span is not None and span[0] <= when.time() < span[1]


@dataclass
class SentMessage:
    call_id: str
    to: str
    purpose: str
    url: str


class MemoryOutbox:
    """Keeps sent links in memory: the simulator without a store, and unit tests. Live calls
    use the store's outbox (`ivr.sms.outbox.SmsOutbox`)."""

    def __init__(self, base_url: str = "http://127.0.0.1:8080") -> None:
        self.base_url = base_url.rstrip("/")
        self.sent: list[SentMessage] = []

    async def send_link(self, call_id: str, to: str, purpose: str, lang: str = "en") -> str:
        url = f"{self.base_url}/v/{secrets.token_urlsafe(32)}"
        self.sent.append(SentMessage(call_id, to, purpose, url))
        return url


class ProfileVerifier:
    """Compares an answer with a plain factor in the profile: the in-memory demo directory only.
    The store keeps factors hashed and checks them itself (`ivr.store.history.HistoryVerifier`)."""

    FIELDS = {"dob": "birth_date", "id_last4": "id_last4"}

    async def check(self, profile: dict[str, Any], method: str, answer: str) -> bool:
        expected = str(profile.get(self.FIELDS.get(method, method)) or "")
        if not expected:
            return False
        return secrets.compare_digest(expected.replace("-", ""), answer.replace("-", ""))


@dataclass
class CallServices:
    """Everything a call needs besides its channel. Built once per process, shared by calls."""

    directory: CustomerDirectory
    flags: FlagProvider = field(default_factory=StaticFlags)
    calendar: BusinessCalendar = field(default_factory=lambda: BusinessCalendar({}, "UTC"))
    sms: SmsGateway = field(default_factory=MemoryOutbox)
    verifier: Verifier = field(default_factory=ProfileVerifier)
    router: Any = None  # ivr.nlu.router.IntentRouter
    predictions: PredictionOutcomes | None = None  # how earlier proactive questions turned out
