"""The in-memory form of a flow set: what the loader builds and the engine runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Targets that are not step or scene ids.
SPECIAL_TARGETS = frozenset({"next", "agent", "hangup", "menu", "repeat", "end"})

Text = dict[str, str]  # language -> prompt text


@dataclass(frozen=True)
class StepDef:
    id: str
    kind: str
    params: dict[str, Any]
    index: int
    path: tuple = ()  # YAML path, for error locations
    explicit_id: bool = False


@dataclass(frozen=True)
class SceneDef:
    id: str
    title: Text
    intents: dict[str, tuple[str, ...]]
    keywords: dict[str, tuple[str, ...]]
    steps: tuple[StepDef, ...]
    file: str
    requires: tuple[str, ...] = ()  # e.g. ("verified",)
    description: str = ""

    def step_index(self, step_id: str) -> int | None:
        for step in self.steps:
            if step.id == step_id:
                return step.index
        return None


@dataclass(frozen=True)
class Escape:
    """A global escape, honoured at every input: 'agent' or 0 reaches a human, and so on."""

    name: str
    then: str
    dtmf: str = ""
    words: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class RetryPolicy:
    say: Text | None = None
    retry: int = 2
    then: str = "agent"


@dataclass(frozen=True)
class Hotline:
    """Settings for the whole flow set, from the `hotline:` file (flows/hotline.yaml)."""

    entry: str = "welcome"
    menu: str = "main_menu"
    agent_scene: str = ""  # when set, the `agent` target enters this scene instead of the queue
    languages: tuple[str, ...] = ("en", "zh")
    default_language: str = "en"
    agent_queue: str = "agents"
    emergency_queue: str = "emergency"
    on_scene_end: str = "hangup"
    escapes: tuple[Escape, ...] = ()
    no_input: RetryPolicy = RetryPolicy()
    no_match: RetryPolicy = RetryPolicy()
    timeouts: dict[str, float] = field(default_factory=lambda: {
        "first_input": 6.0, "interdigit": 4.0, "speech": 10.0})
    texts: dict[str, Text] = field(default_factory=dict)  # shared system prompts
    file: str = ""


@dataclass(frozen=True)
class FlowSet:
    version: str
    hotline: Hotline
    scenes: dict[str, SceneDef]
    files: tuple[str, ...] = ()

    def scene(self, scene_id: str) -> SceneDef:
        return self.scenes[scene_id]
