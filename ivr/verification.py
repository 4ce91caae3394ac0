"""How a caller proves who they are on the visual page: methods behind one small interface.

A method is an object with a `name` and `async check(claimant, answer) -> bool`. `Methods`
holds them by name; the page checks `POST /v/verify` (`method=NAME`, `answer=...`) through it,
and every failed check counts against the same attempt limits, whatever the method.

- `KnowledgeFactor` (`dob`, `id_last4`): the date of birth or the last 4 of the ID document,
  through the process's `Verifier` (ivr.services; salted hashes in the store). The keypad
  `verify` step uses that same Verifier directly.
- `OneTimeCodes` (`otp`): a 6-digit code texted to the number on file, for a page opened on
  another device than the phone the link went to.

A stronger method, such as a face match or a liveness check, plugs in the same way: a class
with `name = "face"` whose `check` takes what the page posts for it (the id of the capture
session the page's script completed with the provider or a local model, not the images),
asks off the event loop whether that session matched this claimant's enrolled face, and
returns True or False. Register it (`Methods(...)` or `.add()`) and give the page a form or
script for it; a pass reaches the call as the `verified` event with method `web-face`.
A method with an `end_call(call_id)` hears when a call ends (to drop what it keeps for it).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from ivr.errors import IvrError
from ivr.privacy import mask_phone

_LOGGER = logging.getLogger(__name__)
CODE_TTL = 300.0  # seconds a texted code is good for
CODES_PER_CALL = 3
_MAX_CALLS = 10000
_CODE = re.compile(r"^[0-9]{6}$")


@dataclass(frozen=True)
class Claimant:
    """Whom a check is about: one live call and its customer, both from the server's side
    (never from the browser)."""

    call_id: str
    profile: dict[str, Any]

    @property
    def number_on_file(self) -> str:
        """Where codes go: the customer's mobile, else their phone (as `sms_link` texts)."""
        return str((self.profile or {}).get("mobile") or (self.profile or {}).get("phone") or "")


class Method(Protocol):
    name: str

    async def check(self, claimant: Claimant, answer: str) -> bool: ...


class Methods:
    """The verification methods a page offers, by name."""

    def __init__(self, *methods: Method) -> None:
        self._by_name = {m.name: m for m in methods}

    def add(self, method: Method) -> None:
        self._by_name[method.name] = method

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def get(self, name: str) -> Method | None:
        return self._by_name.get(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    async def check(self, claimant: Claimant, name: str, answer: str) -> bool:
        method = self._by_name.get(name)
        return method is not None and bool(await method.check(claimant, answer))

    def end_call(self, call_id: str) -> None:
        for method in self._by_name.values():
            ending = getattr(method, "end_call", None)
            if ending is not None:
                ending(call_id)


class KnowledgeFactor:
    """Something only the customer should know, checked against their record by a Verifier."""

    def __init__(self, name: str, verifier: Any) -> None:
        self.name = name
        self._verifier = verifier

    async def check(self, claimant: Claimant, answer: str) -> bool:
        if not claimant.profile:
            return False
        return bool(await self._verifier.check(claimant.profile, self.name, answer))


class CodeSender(Protocol):
    async def send_code(self, call_id: str, to: str, code: str, *, lang: str = "en", minutes: int = 5) -> None:
        """Text the code (no link); returns once it is queued, never waits on delivery."""


class CodeRefused(IvrError):
    """No code was sent: `otp-limit` (enough sent for this call) or `otp-no-number`."""


@dataclass
class _Pending:
    digest: bytes = b""  # HMAC of the live code; b"" once used or replaced by nothing
    expires: float = 0.0
    sent: int = 0


class OneTimeCodes:
    """6-digit codes texted to the number on file. Only an HMAC (a per-process key) of the
    code, bound to the call and the number, is kept; it expires after `ttl` seconds, is good
    once, and a newer code replaces it. At most `per_call` codes go out per call."""

    name = "otp"

    def __init__(self, sms: CodeSender, *, ttl: float = CODE_TTL, per_call: int = CODES_PER_CALL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._sms = sms
        self.ttl = ttl
        self.per_call = per_call
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._calls: "OrderedDict[str, _Pending]" = OrderedDict()

    def _digest(self, call_id: str, to: str, code: str) -> bytes:
        return hmac.new(self._key, f"{call_id}\n{to}\n{code}".encode(), hashlib.sha256).digest()

    def can_send(self, call_id: str) -> bool:
        pending = self._calls.get(call_id)
        return pending is None or pending.sent < self.per_call

    def waiting(self, call_id: str) -> bool:
        """A code was sent for this call and can still be used."""
        pending = self._calls.get(call_id)
        return bool(pending and pending.digest and self._clock() < pending.expires)

    async def send(self, claimant: Claimant, lang: str = "en") -> str:
        """Text a new code to the claimant's number on file; returns that number, masked."""
        to = claimant.number_on_file
        if not to:
            raise CodeRefused("no number on file to text a code to", code="otp-no-number")
        pending = self._calls.setdefault(claimant.call_id, _Pending())
        self._calls.move_to_end(claimant.call_id)
        while len(self._calls) > _MAX_CALLS:
            self._calls.popitem(last=False)
        if pending.sent >= self.per_call:
            raise CodeRefused(f"{self.per_call} codes already sent for this call", code="otp-limit")
        code = f"{secrets.randbelow(10 ** 6):06d}"
        # counted before the await: two quick requests cannot both pass the limit
        pending.digest, pending.expires = self._digest(claimant.call_id, to, code), self._clock() + self.ttl
        pending.sent += 1
        await self._sms.send_code(claimant.call_id, to, code, lang=lang, minutes=max(1, round(self.ttl / 60)))
        _LOGGER.info("one-time code %d of %d for call %s texted to %s", pending.sent, self.per_call,
                     claimant.call_id, mask_phone(to))
        return mask_phone(to)

    async def check(self, claimant: Claimant, answer: str) -> bool:
        pending = self._calls.get(claimant.call_id)
        code = re.sub(r"\s", "", answer or "")
        if pending is None or not pending.digest or not _CODE.match(code):
            return False
        if self._clock() >= pending.expires:
            pending.digest = b""
            return False
        if not hmac.compare_digest(pending.digest, self._digest(claimant.call_id, claimant.number_on_file, code)):
            return False
        pending.digest = b""  # good once
        return True

    def end_call(self, call_id: str) -> None:
        self._calls.pop(call_id, None)


def page_methods(verifier: Any, sms: CodeSender | None = None, **codes: Any) -> Methods:
    """The visual page's methods: the two knowledge factors through `verifier`, and texted
    codes when there is an outbox to send them (`codes`: OneTimeCodes' options)."""
    methods: list[Method] = [KnowledgeFactor("dob", verifier), KnowledgeFactor("id_last4", verifier)]
    if sms is not None:
        methods.append(OneTimeCodes(sms, **codes))
    return Methods(*methods)
