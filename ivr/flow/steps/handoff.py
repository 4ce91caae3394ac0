"""transfer and emergency: hand the caller to a human with the whole context."""

from __future__ import annotations

from ivr import events as ev
from ivr.flow.context import StepContext
from ivr.flow.model import StepDef
from ivr.flow.registry import Field, step


@step("transfer", terminal=True, fields={
    "queue": Field("queue", doc="an Asterisk queue from dialplans/queues.conf; the agent queue by default"),
    "reason": Field("str", required=True, doc="why, for the agent and the statistics"),
    "say": Field("text", doc="what the caller hears first; the hotline's `transfer` text by default"),
})
async def run_transfer(ctx: StepContext, step: StepDef) -> str | None:
    """Hand the caller to a queue with the call's context."""
    await ctx.say(step.params.get("say") or ctx.text("transfer"), barge_in=False)
    queue = step.params.get("queue") or ctx.flows.hotline.agent_queue
    await ctx.transfer(queue, step.params["reason"])
    return None


@step("emergency", terminal=True, fields={
    "kind": Field("str", required=True, doc="accident, breakdown, injury, fraud..."),
    "say": Field("text", required=True, doc="what the caller hears before the urgent transfer"),
    "queue": Field("queue", doc="the hotline's emergency queue by default"),
    "reason": Field("str", default="emergency"),
})
async def run_emergency(ctx: StepContext, step: StepDef) -> str | None:
    """Mark the call urgent and put the caller at the front of the emergency queue."""
    kind = step.params["kind"]
    ctx.publish(ev.Emergency, kind=kind, reason=step.params["reason"])
    await ctx.say(step.params["say"], barge_in=False)
    queue = step.params.get("queue") or ctx.flows.hotline.emergency_queue
    await ctx.transfer(queue, step.params["reason"], {"priority": "high", "emergency": kind})
    return None
