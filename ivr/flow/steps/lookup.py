"""lookup: call a named Python data action and keep its result in a slot."""

from __future__ import annotations

import logging

from ivr import events as ev
from ivr.flow.actions import ActionContext, ActionFailed, data_actions
from ivr.flow.context import StepContext
from ivr.flow.model import StepDef
from ivr.flow.prompts import render
from ivr.flow.registry import Field, step

_LOGGER = logging.getLogger(__name__)


@step("lookup", shorthand="action", fields={
    "action": Field("str", required=True, doc="a registered data action, e.g. claims.status"),
    "args": Field("mapping", doc="arguments; text may use {placeholders}"),
    "save_as": Field("str", doc="slot for the result; the action name with _ for . by default"),
    "on_error": Field("target", default="agent", doc="where to go when the action fails"),
})
async def run_lookup(ctx: StepContext, step: StepDef) -> str | None:
    """Fetch data (a claim's status, a card's state) for later prompts and branches."""
    name = step.params["action"]
    args = {k: render({ctx.lang: v}, ctx.lang, ctx.values()) if isinstance(v, str) else v
            for k, v in (step.params.get("args") or {}).items()}
    action_ctx = ActionContext(ctx.state.caller, ctx.lang, ctx.state.slots, ctx.profile,
                               ctx.services.directory, ctx.state.verified)
    try:
        result = await data_actions()[name](action_ctx, args)
    except ActionFailed as exc:
        ctx.publish(ev.Lookup, action=name, ok=False)
        ctx.publish(ev.Error, code=exc.code, message=exc.message)
        return step.params["on_error"]
    except Exception as exc:  # a broken backend is a failed lookup, not a dead call
        _LOGGER.exception("data action %s failed", name)
        ctx.publish(ev.Lookup, action=name, ok=False)
        ctx.publish(ev.Error, code="lookup-failed", message=type(exc).__name__)
        return step.params["on_error"]
    ctx.state.slots[step.params.get("save_as") or name.replace(".", "_")] = result
    ctx.publish(ev.Lookup, action=name, ok=True)
    return None
