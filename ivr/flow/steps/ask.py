"""ask (collect a slot by keypad and/or speech) and confirm (yes/no)."""

from __future__ import annotations

from ivr.flow.channel import CallerInput, ListenSpec
from ivr.flow.context import ESCAPE_WORDS, TEXT_ESCAPE_WORDS, StepContext
from ivr.flow.model import StepDef
from ivr.flow.registry import Field, step
from ivr.flow.validators import max_keys, validate
from ivr.nlu.yesno import yes_or_no

RETRY_FIELDS = {
    "no_input": Field("retry", doc="{say, retry, then} when the caller says nothing"),
    "no_match": Field("retry", doc="{say, retry, then} when the answer is not valid"),
}


def _spec(ctx: StepContext, step: StepDef, keys: int | None, hints: tuple[str, ...] = ()) -> ListenSpec:
    inputs = step.params.get("input", ("dtmf", "speech"))
    timeout = step.params.get("timeout") or ctx.flows.hotline.timeouts.get("first_input", 6.0)
    return ListenSpec(dtmf="dtmf" in inputs, speech="speech" in inputs, timeout=timeout,
                      max_keys=keys, hints=hints)


def validator_of(params: dict) -> dict:
    if "validate" in params:
        return params["validate"]
    if "pattern" in params:
        return {"type": "regex", "pattern": params["pattern"]}
    inputs = params.get("input", ("dtmf", "speech"))
    return {"type": "digits"} if "dtmf" in inputs else {"type": "text"}


@step("ask", fields={
    "slot": Field("str", required=True, doc="the slot to fill"),
    "say": Field("text", required=True, doc="the question"),
    "input": Field("inputs", default=("dtmf", "speech"), doc="dtmf, speech or both"),
    "validate": Field("validator", doc="{type: digits|regex|luhn|date|yesno|amount|text|choice, ...}"),
    "pattern": Field("regex", doc="shorthand for validate: {type: regex, pattern: ...}"),
    "sensitive": Field("bool", default=False, doc="mask the value in events, logs and the store"),
    "reask": Field("bool", default=False, doc="ask even when the slot is already filled"),
    "timeout": Field("float", doc="seconds to wait for the first input"),
    "then": Field("target", doc="where to go once filled; the next step by default"),
    **RETRY_FIELDS,
})
async def run_ask(ctx: StepContext, step: StepDef) -> str | None:
    """Collect one slot. On the keypad `*` deletes the last digit and `#` submits."""
    params = step.params
    slot = params["slot"]
    if ctx.state.slots.get(slot) not in (None, "") and not params["reask"]:
        return params.get("then")  # filled already, e.g. by a proactive prompt
    spec_v = validator_of(params)
    hints = ("yes", "no") if spec_v["type"] == "yesno" else ()

    async def interpret(inp: CallerInput) -> str | None:
        verdict = validate(inp.value, inp.kind, spec_v)
        return verdict.value if verdict.ok else None

    free_text = spec_v["type"] == "text"  # an address may mention "customer service"
    if "dtmf" in params.get("input", ("dtmf", "speech")) and not free_text:
        ctx.offer(entry={"slot": slot, "length": max_keys(spec_v), "sensitive": bool(params["sensitive"])})
    value = await ctx.collect(params["say"], _spec(ctx, step, max_keys(spec_v), hints), interpret,
                              sensitive=params["sensitive"],
                              escape_words=TEXT_ESCAPE_WORDS if free_text else ESCAPE_WORDS)
    ctx.set_slot(slot, value, sensitive=params["sensitive"])
    return params.get("then")


def _confirm_terminal(params: dict) -> bool:
    return params.get("yes", "next") != "next" and params.get("no", "next") != "next"


@step("confirm", terminal=_confirm_terminal, fields={
    "say": Field("text", required=True, doc="a yes/no question: press 1 for yes, 2 for no"),
    "slot": Field("str", doc="keep the answer (yes/no) in this slot"),
    "yes": Field("target", default="next"),
    "no": Field("target", default="next"),
    "input": Field("inputs", default=("dtmf", "speech")),
    "timeout": Field("float"),
    **RETRY_FIELDS,
})
async def run_confirm(ctx: StepContext, step: StepDef) -> str | None:
    """Ask a yes/no question: 1 or "yes" is yes, 2 or "no" is no."""
    params = step.params

    async def interpret(inp: CallerInput) -> str | None:
        if inp.kind == "dtmf":
            return {"1": "yes", "2": "no"}.get(inp.value)
        if inp.kind == "click":
            return inp.value if inp.value in ("yes", "no") else None
        return yes_or_no(inp.value)

    ctx.offer_yes_no()
    answer = await ctx.collect(params["say"], _spec(ctx, step, 1, ("yes", "no")), interpret,
                               option_keys=("1", "2"))
    if params.get("slot"):
        ctx.set_slot(params["slot"], answer)
    return params[answer]
