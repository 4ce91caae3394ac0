"""A call's state, serialisable so a call can resume after a controller restart."""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Any


def new_call_id() -> str:
    """32 hex digits: the time in milliseconds, then 80 random bits. Ids that grow with time go
    in at the end of the store's indexes instead of all over them (fewer pages per commit)."""
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


@dataclass
class CallState:
    caller: str
    lang: str
    flow_version: str
    lang_source: str = ""  # given | profile | default | detected (by ear, from a default)
    call_id: str = field(default_factory=new_call_id)
    scene: str = ""
    step: str = ""
    slots: dict[str, Any] = field(default_factory=dict)
    verified: bool = False
    verified_method: str = ""
    scenes: list[str] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    outcome: str = ""  # resolved | transferred | hangup-caller | error
    transfer_reason: str = ""
    escalation: str = ""  # why the call was sent to a human (no-match, caller-agent, ...)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CallState":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
