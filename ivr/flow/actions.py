"""Named data actions for `lookup` steps. They register by decorator:

    @data_action("claims.status")
    async def claim_status(ctx: ActionContext, args: dict) -> dict: ...

The returned mapping is stored under the step's `save_as` slot, so prompts can say
"{claim.status_text}". Raising ActionFailed sends the call to the step's `on_error` target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from ivr.errors import IvrError


class ActionFailed(IvrError):
    code = "lookup-failed"


@dataclass
class ActionContext:
    caller: str
    lang: str
    slots: dict[str, Any]
    profile: dict[str, Any]
    directory: Any  # a CustomerDirectory (ivr.services)
    verified: bool = False


DataAction = Callable[[ActionContext, dict], Awaitable[dict]]
DATA_ACTIONS: dict[str, DataAction] = {}


def data_action(name: str) -> Callable[[DataAction], DataAction]:
    def register(fn: DataAction) -> DataAction:
        if name in DATA_ACTIONS:
            raise ValueError(f"data action {name!r} registered twice")
        DATA_ACTIONS[name] = fn
        return fn

    return register


def data_actions() -> dict[str, DataAction]:
    import ivr.data.actions  # noqa: F401  (registers the built-in actions)

    return DATA_ACTIONS
