"""proactive: open with the likely reason for the call ("Are you calling about your claim?").

This first version ranks the flow's rules by their declared score; the caller-history issue
adds data-driven scores from past intents.
"""

from __future__ import annotations

from ivr import events as ev
from ivr.flow import conditions
from ivr.flow.channel import CallerInput, ListenSpec
from ivr.flow.context import Jump, StepContext
from ivr.flow.model import StepDef
from ivr.flow.prompts import render
from ivr.flow.registry import Field, step
from ivr.nlu.yesno import yes_or_no


@step("proactive", shorthand="rules", fields={
    "rules": Field("rules", required=True,
                   doc="[{name, if: condition, scene, say, slots, score}]: candidate reasons for the call"),
    "threshold": Field("float", default=0.5, doc="the best candidate must score at least this"),
    "no": Field("target", default="next", doc="where a 'no' goes; the next step by default"),
})
async def run_proactive(ctx: StepContext, step: StepDef) -> str | None:
    """Ask about the most likely matter first; yes enters its scene with slots filled."""
    scope = ctx.scope()
    candidates = [(rule.get("score", 1.0), i, rule) for i, rule in enumerate(step.params["rules"])
                  if conditions.evaluate(rule["if"], scope)]
    if not candidates:
        return None
    score, _, rule = max(candidates, key=lambda c: (c[0], -c[1]))
    if score < step.params["threshold"]:
        return None
    name = rule.get("name") or rule["scene"]
    timeout = ctx.flows.hotline.timeouts.get("first_input", 6.0)
    inp = await ctx.gather(rule["say"], ListenSpec(timeout=timeout, hints=("yes", "no")),
                           option_keys=("1", "2"))
    answer = _answer(inp)
    ctx.publish(ev.Proactive, prediction=name, accepted=answer == "yes" if answer else None,
                score=round(float(score), 3))
    if answer != "yes":
        return step.params["no"]
    for slot, value in (rule.get("slots") or {}).items():
        if isinstance(value, str):
            value = render({ctx.lang: value}, ctx.lang, ctx.values())
        ctx.set_slot(slot, value)
    raise Jump(rule["scene"], f"proactive:{name}")


def _answer(inp: CallerInput) -> str | None:
    if inp.kind == "dtmf":
        return {"1": "yes", "2": "no"}.get(inp.value)
    if inp.kind == "click":
        return inp.value if inp.value in ("yes", "no") else None
    if inp.kind == "speech":
        return yes_or_no(inp.value)
    return None
