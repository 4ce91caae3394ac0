"""The one small interface every transport meets: AGI, ARI and the simulator.

The engine knows only this Protocol; telephony modules translate it to wire commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class CallerInput:
    kind: str  # dtmf | speech | click | timeout
    value: str = ""
    confidence: float = 1.0
    lang: str = ""  # speech: the language it was recognised in (when detected by ear)


TIMEOUT = CallerInput("timeout")


@dataclass(frozen=True)
class ListenSpec:
    dtmf: bool = True
    speech: bool = True
    timeout: float = 6.0  # seconds to wait for the first input
    max_keys: int | None = 1  # keys that complete an entry without `#`; None: until `#`
    hints: tuple[str, ...] = ()  # words the recogniser should expect here
    lang: str = ""  # the language to recognise ("" = the transport's last prompt's)
    detect: tuple[str, ...] = ()  # or choose among these by ear (a caller whose language is unknown)


@dataclass(frozen=True)
class PromptOut:
    text: str
    lang: str
    barge_in: bool = True
    audio: str | None = None  # a recorded file that overrides TTS
    key: str = ""  # stable id of a static prompt (scene.step), for the prompt cache
    expect: ListenSpec | None = None  # the input this prompt asks for: speech over it may barge in


class Channel(Protocol):
    def clock(self) -> float:
        """Seconds since the call started (simulated time in the simulator)."""

    async def play(self, prompt: PromptOut) -> CallerInput | None:
        """Play a prompt. Returns the input that barged in, if any. Raises CallerHangup."""

    async def listen(self, spec: ListenSpec) -> CallerInput:
        """Wait for the next input, or TIMEOUT. Keys may come several at once. Raises CallerHangup."""

    async def transfer(self, queue: str, context: dict) -> None:
        """Hand the caller to a human queue with the call's context."""

    async def hangup(self) -> None:
        """End the call from our side."""


class Injectable(Protocol):
    """What a transport offers the visual page: an input that did not come down the phone line
    (a tap, keys from the page's keypad). It counts as the caller's next input; an
    interruptible prompt stops for it."""

    def inject(self, inp: CallerInput) -> None: ...
