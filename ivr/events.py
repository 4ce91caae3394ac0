"""Call events: small frozen dataclasses, one stream per call.

The wire form is `{"t": seconds_since_call_start, "type": ..., **fields}`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Callable, ClassVar

_LOGGER = logging.getLogger(__name__)


class EventType(StrEnum):
    CALL_START = "call_start"
    PROMPT = "prompt"
    INPUT = "input"
    INTENT = "intent"
    SCENE = "scene"
    STEP = "step"
    SLOT = "slot"
    LOOKUP = "lookup"
    PROACTIVE = "proactive"
    SMS = "sms"
    VERIFIED = "verified"
    EMERGENCY = "emergency"
    TRANSFER = "transfer"
    HANGUP = "hangup"
    ERROR = "error"
    TIMING = "timing"
    CHOICES = "choices"


@dataclass(frozen=True, slots=True)
class Event:
    type: ClassVar[EventType]
    t: float

    def to_dict(self) -> dict[str, Any]:
        data = {"t": round(self.t, 3), "type": self.type.value}
        for name in _field_names(type(self)):
            value = getattr(self, name)
            data[name] = list(value) if type(value) is tuple else value  # JSON's own form
        return data

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "Event":
        cls = EVENT_CLASSES[EventType(data["type"])]
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    """An event class's fields after `t` (dataclasses.fields() is slow to call per event)."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.name != "t")


@dataclass(frozen=True, slots=True)
class CallStart(Event):
    type: ClassVar[EventType] = EventType.CALL_START
    caller: str
    flow_version: str
    call_id: str = ""
    lang: str = "en"


@dataclass(frozen=True, slots=True)
class Prompt(Event):
    type: ClassVar[EventType] = EventType.PROMPT
    text: str
    lang: str
    step: str = ""


@dataclass(frozen=True, slots=True)
class Input(Event):
    type: ClassVar[EventType] = EventType.INPUT
    kind: str  # dtmf | speech | click
    value: str
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class Intent(Event):
    type: ClassVar[EventType] = EventType.INTENT
    name: str
    score: float
    runner_up: str | None = None


@dataclass(frozen=True, slots=True)
class Scene(Event):
    type: ClassVar[EventType] = EventType.SCENE
    id: str


@dataclass(frozen=True, slots=True)
class Step(Event):
    type: ClassVar[EventType] = EventType.STEP
    scene: str
    id: str
    kind: str


@dataclass(frozen=True, slots=True)
class Slot(Event):
    type: ClassVar[EventType] = EventType.SLOT
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class Lookup(Event):
    type: ClassVar[EventType] = EventType.LOOKUP
    action: str
    ok: bool


@dataclass(frozen=True, slots=True)
class Proactive(Event):
    type: ClassVar[EventType] = EventType.PROACTIVE
    prediction: str
    accepted: bool | None
    score: float = 0.0
    scene: str = ""  # the scene a yes leads to
    parts: dict | None = None  # how the score was made: rule, own history, similar customers


@dataclass(frozen=True, slots=True)
class Sms(Event):
    type: ClassVar[EventType] = EventType.SMS
    to: str
    url: str
    purpose: str = "visual"


@dataclass(frozen=True, slots=True)
class Verified(Event):
    type: ClassVar[EventType] = EventType.VERIFIED
    method: str
    ok: bool = True


@dataclass(frozen=True, slots=True)
class Emergency(Event):
    type: ClassVar[EventType] = EventType.EMERGENCY
    kind: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Transfer(Event):
    type: ClassVar[EventType] = EventType.TRANSFER
    queue: str
    reason: str
    context: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Hangup(Event):
    type: ClassVar[EventType] = EventType.HANGUP
    by: str  # caller | ivr | agent


@dataclass(frozen=True, slots=True)
class Error(Event):
    type: ClassVar[EventType] = EventType.ERROR
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Timing(Event):
    """A measured latency, e.g. answer_to_first_prompt, from the transport's clock."""

    type: ClassVar[EventType] = EventType.TIMING
    name: str
    ms: float


@dataclass(frozen=True, slots=True)
class Choices(Event):
    """What the current step takes, for the visual page: buttons (`items`: value and label) or
    a keypad entry (`entry`: slot, length, sensitive). Valid until the next `step` event."""

    type: ClassVar[EventType] = EventType.CHOICES
    step: str
    items: tuple = ()
    entry: dict | None = None


EVENT_CLASSES: dict[EventType, type[Event]] = {
    cls.type: cls
    for cls in (CallStart, Prompt, Input, Intent, Scene, Step, Slot, Lookup, Proactive, Sms,
                Verified, Emergency, Transfer, Hangup, Error, Timing, Choices)
}

Subscriber = Callable[[Event], None]


class EventStream:
    """One call's events. Subscribers (store, pages, logs) must not block: queue work instead."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self.history: list[Event] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def publish(self, event: Event) -> None:
        self.history.append(event)
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:  # a broken subscriber must never break the call
                _LOGGER.exception("event subscriber failed on %s", event.type)
