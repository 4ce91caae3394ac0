"""Step types register here by decorator, so a new step type never edits the engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable

if TYPE_CHECKING:
    from ivr.flow.context import StepContext
    from ivr.flow.model import StepDef


@dataclass(frozen=True)
class Field:
    kind: str  # see ivr.flow.schema.PARSERS
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()
    doc: str = ""


Runner = Callable[["StepContext", "StepDef"], Awaitable["str | None"]]


@dataclass(frozen=True)
class StepType:
    name: str
    run: Runner
    fields: dict[str, Field] = field(default_factory=dict)
    shorthand: str | None = None  # the field a non-mapping value fills: `goto: scene_id`
    terminal: bool | Callable[[dict], bool] = False  # never falls through to the next step
    doc: str = ""
    params_field: str | None = None  # the whole mapping fills this field: `set: {a: 1}`

    def is_terminal(self, params: dict) -> bool:
        return self.terminal(params) if callable(self.terminal) else self.terminal


STEP_TYPES: dict[str, StepType] = {}


def step(name: str, *, fields: dict[str, Field] | None = None, shorthand: str | None = None,
         terminal: bool | Callable[[dict], bool] = False,
         params_field: str | None = None) -> Callable[[Runner], Runner]:
    """Register a step handler: `@step("menu", fields={...})`."""

    def register(run: Runner) -> Runner:
        if name in STEP_TYPES:
            raise ValueError(f"step type {name!r} registered twice")
        STEP_TYPES[name] = StepType(name, run, dict(fields or {}), shorthand, terminal,
                                    (run.__doc__ or "").strip(), params_field)
        return run

    return register


def step_types() -> dict[str, StepType]:
    import ivr.flow.steps  # noqa: F401  (registers the built-in types)

    return STEP_TYPES
