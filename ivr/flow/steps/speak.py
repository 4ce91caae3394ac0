"""say and hangup."""

from __future__ import annotations

from ivr.flow.context import Jump, StepContext
from ivr.flow.model import StepDef
from ivr.flow.registry import Field, step


@step("say", shorthand="prompt", fields={
    "prompt": Field("text", required=True, doc="what to say, in every language"),
    "barge_in": Field("bool", default=True, doc="a key press or speech may cut it short"),
})
async def run_say(ctx: StepContext, step: StepDef) -> str | None:
    """Say something. Keys pressed over it carry on to the next step (type-ahead)."""
    if step.params["barge_in"]:
        await ctx.say_ahead(step.params["prompt"])
    else:
        await ctx.say(step.params["prompt"], barge_in=False)
    return None


@step("hangup", shorthand="say", terminal=True, fields={
    "say": Field("text", doc="a goodbye; the hotline's `goodbye` text when omitted"),
})
async def run_hangup(ctx: StepContext, step: StepDef) -> str | None:
    """Say goodbye and end the call."""
    await ctx.say(step.params.get("say") or ctx.text("goodbye"), barge_in=False)
    raise Jump("hangup", "done")
