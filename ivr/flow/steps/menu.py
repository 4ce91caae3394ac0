"""menu: options by key, by speech (paraphrases too) or by a tap on the visual page."""

from __future__ import annotations

import re
from typing import Any

from ivr import events as ev
from ivr.flow.channel import CallerInput, ListenSpec
from ivr.flow.context import ESCAPE_WORDS, ROUTED_ESCAPE_WORDS, StepContext
from ivr.flow.model import StepDef
from ivr.flow.registry import Field, step
from ivr.flow.steps.ask import RETRY_FIELDS, _spec
from ivr.nlu.router import Decision

CLARIFY_DEFAULT = {"en": "Is this about {_a}, or {_b}? Press 1 for {_a}, or 2 for {_b}.",
                   "zh": "请问您是要办理{_a}，还是{_b}？{_a}请按1，{_b}请按2。"}


def _menu_terminal(params: dict) -> bool:
    return all(o.get("then") != "next" for o in params.get("options", ()))


@step("menu", terminal=_menu_terminal, fields={
    "say": Field("text", required=True, doc="the menu prompt"),
    "options": Field("options", required=True, doc="[{key, label, words, then, value}]"),
    "input": Field("inputs", default=("dtmf", "speech")),
    "route": Field("bool", default=False, doc="free speech may reach any scene by its intents"),
    "slot": Field("str", doc="keep the chosen option's value (or target) in this slot"),
    "timeout": Field("float"),
    **RETRY_FIELDS,
})
async def run_menu(ctx: StepContext, step: StepDef) -> str | None:
    """Offer options; speech is matched to option words, labels and the scenes they lead to."""
    params = step.params
    options: tuple[dict, ...] = params["options"]
    keys = tuple(o["key"] for o in options if o.get("key"))
    router = ctx.services.router

    async def interpret(inp: CallerInput) -> dict | None:
        if inp.kind == "dtmf":
            return next((o for o in options if o.get("key") == inp.value), None)
        if inp.kind == "click":
            return next((o for o in options if inp.value in (o.get("value"), o["then"], o.get("key"))), None)
        return await _by_speech(ctx, step, options, inp.value, router)

    hints = tuple(w for o in options for ws in o.get("words", {}).values() for w in ws)
    limit = ROUTED_ESCAPE_WORDS if params.get("route") and router is not None else ESCAPE_WORDS
    ctx.offer([{"value": o.get("key") or o["then"], "label": _label(ctx, o)} for o in options])
    tapped: list[bool] = []

    async def noting_taps(inp: CallerInput) -> dict | None:
        tapped[:] = [inp.kind == "click"]
        return await interpret(inp)

    chosen = await ctx.collect(params["say"], _spec(ctx, step, 1, hints), noting_taps, option_keys=keys,
                               escape_words=limit)
    if tapped and tapped[0]:  # a tap is silent: the caller hears what the call understood
        await ctx.say_ahead({lang: text.replace("{_choice}", _label(ctx, chosen))
                             for lang, text in ctx.text("chosen").items()})
    if params.get("slot"):
        ctx.set_slot(params["slot"], chosen.get("value") or chosen["then"])
    return chosen["then"]


def _label(ctx: StepContext, option: dict) -> str:
    label = option.get("label") or {}
    if isinstance(label, dict):
        return str(label.get(ctx.lang) or next(iter(label.values()), "") or option["then"])
    return str(label or option["then"])


async def _by_speech(ctx: StepContext, step: StepDef, options: tuple[dict, ...], text: str,
                     router: Any) -> dict | None:
    """Rank the options, and with `route: true` every scene too, in one index: the caller's
    words pick the most specific match ("I lost my card" goes to card_lost, not the card menu)."""
    if router is None:
        return None
    labels = {str(i): _examples(ctx, o) for i, o in enumerate(options)}
    if step.params.get("route"):
        for sid, scene in ctx.flows.scenes.items():
            if scene.intents:
                labels[f"scene:{sid}"] = [p for ps in scene.intents.values() for p in ps]
    key = f"menu:{ctx.flows.version}:{ctx.scene.id}.{step.id}"
    decision: Decision = await ctx.off_loop(router.classify_labels, key, labels, text)
    return await _settle(ctx, decision, options)


async def _settle(ctx: StepContext, decision: Decision, options: tuple[dict, ...]) -> dict | None:
    def option_for(label: str) -> dict:
        if label.startswith("scene:"):
            sid = label[6:]
            found = next((o for o in options if o["then"] == sid), None)
            return found or {"then": sid, "label": ctx.flows.scenes[sid].title}
        return options[int(label)]

    def name_of(opt: dict) -> str:
        return opt.get("value") or opt["then"]

    if decision.kind == "none":
        if decision.best:
            ctx.publish(ev.Intent, name="none", score=round(decision.score, 3),
                        runner_up=name_of(option_for(decision.best)))
        return None
    first = option_for(decision.best)
    second = option_for(decision.second) if decision.second else None
    if decision.kind == "match" or second is None or second["then"] == first["then"]:
        ctx.publish(ev.Intent, name=name_of(first), score=round(decision.score, 3),
                    runner_up=name_of(second) if second else None)
        return first
    ctx.publish(ev.Intent, name="clarify", score=round(decision.score, 3), runner_up=None)
    return await _clarify(ctx, first, second)


async def _clarify(ctx: StepContext, first: dict, second: dict) -> dict | None:
    """Top two are close: "Is this about A or B?" One answer, then back to the menu's retries."""
    a, b = ctx.render(first["label"]), ctx.render(second["label"])
    ctx.state.slots["_a"], ctx.state.slots["_b"] = a, b
    prompt = ctx.text("clarify") or CLARIFY_DEFAULT
    try:
        inp = await ctx.gather(prompt, ListenSpec(timeout=ctx.flows.hotline.timeouts.get("first_input", 6.0)),
                               option_keys=("1", "2"))
    finally:  # also when the caller escapes or hangs up here
        for key in ("_a", "_b"):
            ctx.state.slots.pop(key, None)
    if inp.kind == "dtmf":
        choice = {"1": first, "2": second}.get(inp.value)
    elif inp.kind == "speech":
        low = inp.value.lower()
        words = set(re.findall(r"[\w']+", low))
        says_a = a.lower() in low and b.lower() not in low or bool(words & {"first", "former"}) or "第一" in low
        says_b = b.lower() in low and a.lower() not in low or bool(words & {"second", "latter"}) or "第二" in low
        if says_a == says_b:  # neither or both: a bare "one" / "two" decides
            says_a, says_b = bool(words & {"one", "1"}), bool(words & {"two", "2"})
        choice = first if says_a and not says_b else second if says_b and not says_a else None
    else:
        choice = None
    if choice is not None:
        ctx.publish(ev.Intent, name=choice.get("value") or choice["then"], score=1.0, runner_up=None)
    return choice


def _examples(ctx: StepContext, option: dict) -> list[str]:
    examples = [w for ws in option.get("words", {}).values() for w in ws]
    examples += [v for k, v in option["label"].items() if k != "audio"]
    target = ctx.flows.scenes.get(option["then"])
    if target is not None:
        examples += [p for ps in target.intents.values() for p in ps]
    return examples
