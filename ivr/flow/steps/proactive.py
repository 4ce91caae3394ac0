"""proactive: open with the likely reason for the call ("Are you calling about your claim?").

The candidates are the rules whose condition holds for this caller; each is scored from its
declared score, how often it was right for similar customers, and this customer's recent
calls (`ivr.flow.proactive_score`). The best one above the threshold is asked.
"""

from __future__ import annotations

from ivr import events as ev
from ivr.flow import conditions
from ivr.flow.channel import CallerInput, ListenSpec
from ivr.flow.context import Jump, StepContext
from ivr.flow.proactive_score import ScoreWeights, past_calls, score
from ivr.flow.model import StepDef
from ivr.flow.prompts import render
from ivr.flow.registry import Field, step
from ivr.nlu.yesno import yes_or_no


@step("proactive", shorthand="rules", fields={
    "rules": Field("rules", required=True,
                   doc="[{name, if: condition, scene, say, slots, score}]: candidate reasons for the call"),
    "threshold": Field("float", default=0.5, doc="the best candidate must score at least this"),
    "no": Field("target", default="next", doc="where a 'no' goes; the next step by default"),
    "half_life_days": Field("float", default=14.0,
                            doc="a past call counts half as much after this many days"),
})
async def run_proactive(ctx: StepContext, step: StepDef) -> str | None:
    """Ask about the most likely matter first; yes enters its scene with slots filled."""
    scope = ctx.scope()
    rules = [(i, rule) for i, rule in enumerate(step.params["rules"]) if conditions.evaluate(rule["if"], scope)]
    if not rules:
        return None
    names = [rule.get("name") or rule["scene"] for _, rule in rules]
    outcomes = await _outcomes(ctx, names)
    calls = past_calls(ctx.profile or {}, ctx.services.calendar.now())
    weights = ScoreWeights(half_life_days=float(step.params.get("half_life_days", 14.0)))
    ranked = []
    for (i, rule), name in zip(rules, names):
        value, parts = score(float(rule.get("score", 1.0)), rule["scene"], calls, outcomes.get(name), weights)
        ranked.append((value, -i, rule, parts))
    best, _, rule, parts = max(ranked, key=lambda c: (c[0], c[1]))
    if best < step.params["threshold"]:
        return None
    name = rule.get("name") or rule["scene"]
    timeout = ctx.flows.hotline.timeouts.get("first_input", 6.0)
    ctx.offer_yes_no()
    inp = await ctx.gather(rule["say"], ListenSpec(timeout=timeout, hints=("yes", "no")),
                           option_keys=("1", "2"))
    answer = _answer(inp)
    ctx.publish(ev.Proactive, prediction=name, accepted=answer == "yes" if answer else None,
                score=round(best, 3), scene=rule["scene"], parts=parts)
    if answer != "yes":
        return step.params["no"]
    for slot, value in (rule.get("slots") or {}).items():
        if isinstance(value, str):
            value = render({ctx.lang: value}, ctx.lang, ctx.values())
        ctx.set_slot(slot, value)
    raise Jump(rule["scene"], f"proactive:{name}")


async def _outcomes(ctx: StepContext, names: list[str]) -> dict[str, tuple[int, int]]:
    """(asked, right) per rule name from earlier calls; none when no history is kept."""
    source = getattr(ctx.services, "predictions", None)
    if source is None:
        return {}
    try:
        return await source.outcomes(names)
    except Exception:  # a broken store must not cost the caller the question
        return {}


def _answer(inp: CallerInput) -> str | None:
    if inp.kind == "dtmf":
        return {"1": "yes", "2": "no"}.get(inp.value)
    if inp.kind == "click":
        return inp.value if inp.value in ("yes", "no") else None
    if inp.kind == "speech":
        return yes_or_no(inp.value)
    return None
