"""branch, set and goto: flow control with no caller interaction."""

from __future__ import annotations

from ivr.flow import conditions
from ivr.flow.context import StepContext
from ivr.flow.model import StepDef
from ivr.flow.prompts import render
from ivr.flow.registry import Field, step


def _branch_terminal(params: dict) -> bool:
    return params.get("else", "next") != "next"


@step("branch", shorthand="cases", terminal=_branch_terminal, fields={
    "cases": Field("branches", required=True, doc="[{if: condition, then: target}], first match wins"),
    "else": Field("target", doc="where to go when no case matches; the next step when omitted"),
})
async def run_branch(ctx: StepContext, step: StepDef) -> str | None:
    """Go to the first case whose condition holds (slots, profile, flags, hours, holidays)."""
    scope = ctx.scope()
    for case in step.params["cases"]:
        if conditions.evaluate(case["if"], scope):
            return case["then"]
    return step.params.get("else")


@step("set", params_field="values", fields={
    "values": Field("mapping", required=True, doc="slot: value; text may use {placeholders}"),
})
async def run_set(ctx: StepContext, step: StepDef) -> str | None:
    """Set slots. `lang` switches the call's language."""
    for name, value in step.params["values"].items():
        if isinstance(value, str):
            value = render({ctx.lang: value}, ctx.lang, ctx.values())
        ctx.set_slot(str(name), value)
    return None


@step("goto", shorthand="target", terminal=True, fields={
    "target": Field("target", required=True, doc="a step id, a scene id, or next/agent/menu/hangup/end"),
})
async def run_goto(ctx: StepContext, step: StepDef) -> str | None:
    """Jump to a step of this scene, another scene, or a special target."""
    return step.params["target"]
