"""The calls running in this process, as the visual page (and later the agent desk) see them.

A page never touches a transport or the engine directly: it finds its call here, reads and
follows the call's event stream, and hands in what the caller did on the page (a tap, keys
from the page's keypad, a verification). The transport carries the input to the engine as the
caller's next input (`Injectable`), so AGI, ARI and the simulator all work the same way.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Callable

from ivr import events as ev
from ivr.flow.channel import CallerInput
from ivr.flow.context import VERIFIED_TAP

_LOGGER = logging.getLogger(__name__)
_KEYS = re.compile(r"^[0-9]{1,32}#?$")
_TAP = re.compile(r"^[A-Za-z0-9_:.-]{1,64}$")


class LiveCall:
    def __init__(self, runner: Any) -> None:
        self._runner = runner

    @property
    def call_id(self) -> str:
        return self._runner.state.call_id

    @property
    def lang(self) -> str:
        return self._runner.state.lang

    @property
    def verified(self) -> bool:
        return bool(self._runner.state.verified)

    @property
    def profile(self) -> dict[str, Any]:
        ctx = self._runner.ctx
        return (ctx.profile if ctx is not None else None) or {}

    @property
    def history(self) -> list[ev.Event]:
        return list(self._runner.stream.history)

    def subscribe(self, subscriber: Callable[[ev.Event], None]) -> Callable[[], None]:
        return self._runner.stream.subscribe(subscriber)

    def page_opened(self) -> None:
        """A page follows this call: a transport that has to poll for taps starts doing so."""
        if hasattr(self._runner.channel, "taps"):
            self._runner.channel.taps = True

    def _inject(self, inp: CallerInput) -> bool:
        inject = getattr(self._runner.channel, "inject", None)
        if inject is None:
            return False
        inject(inp)
        return True

    def tap(self, value: str) -> bool:
        """A button on the page (an option's value, yes/no, an escape): the caller's next input."""
        if not _TAP.match(value or "") or value == VERIFIED_TAP:
            return False
        return self._inject(CallerInput("click", value))

    def enter_keys(self, digits: str) -> bool:
        """Digits from the page's keypad (already edited with its delete key), as DTMF would
        come; `#` at the end submits an entry of open length."""
        if not _KEYS.match(digits or ""):
            return False
        return self._inject(CallerInput("dtmf", digits))

    def mark_verified(self, method: str) -> None:
        """The caller proved who they are on the page: the call knows within its next input
        wait, says so, and `verified` conditions hold from now on (for this call only)."""
        state = self._runner.state
        if state.verified:
            return
        state.verified, state.verified_method = True, f"web-{method}"
        channel = self._runner.channel
        clock = getattr(channel, "clock", None)
        self._runner.stream.publish(ev.Verified(t=clock() if clock else 0.0, method=f"web-{method}", ok=True))
        self._inject(CallerInput("click", VERIFIED_TAP))


class LiveCalls:
    """Look-ups over the Hotline's running calls (`Hotline.active`: call_id -> CallRunner)."""

    def __init__(self, active: dict[str, Any]) -> None:
        self._active = active

    def get(self, call_id: str) -> LiveCall | None:
        runner = self._active.get(call_id)
        return LiveCall(runner) if runner is not None else None

    def __len__(self) -> int:
        return len(self._active)
