"""sms_link (text the caller a link to the visual page) and verify (prove who is calling)."""

from __future__ import annotations

from ivr import events as ev
from ivr.flow.channel import CallerInput, ListenSpec
from ivr.flow.context import Jump, StepContext
from ivr.flow.model import StepDef
from ivr.flow.registry import Field, step
from ivr.flow.validators import validate
from ivr.privacy import mask_phone

DEFAULT_VERIFY = {
    "dob": {"en": "For your security, please key in your date of birth as eight digits, year first.",
            "zh": "为了您的账户安全，请输入您的出生日期，共八位数字，年份在前。"},
    "id_last4": {"en": "For your security, please key in the last four digits of your ID number.",
                 "zh": "为了您的账户安全，请输入您身份证号码的后四位。"},
}
SPEC = {"dob": {"type": "date", "past": True}, "id_last4": {"type": "regex", "pattern": r"\d{3}[\dXx]"}}


@step("sms_link", fields={
    "purpose": Field("str", default="visual", choices=("visual", "verify", "documents"),
                     doc="what the page is for"),
    "say": Field("text", doc="what the caller hears once the link is sent"),
    "to": Field("str", doc="number to text; the customer's number on file by default"),
})
async def run_sms_link(ctx: StepContext, step: StepDef) -> str | None:
    """Text the caller a link to a live page of this call."""
    to = ctx.render({ctx.lang: step.params["to"]}) if step.params.get("to") else (
        ctx.profile.get("mobile") or ctx.profile.get("phone"))
    if not to:
        ctx.publish(ev.Error, code="sms-no-number", message="no mobile number on file")
        return None
    url = await ctx.services.sms.send_link(ctx.state.call_id, to, step.params["purpose"], lang=ctx.lang)
    token_at = url.rfind("/") + 1
    ctx.publish(ev.Sms, to=mask_phone(to), url=url[:token_at] + url[token_at:token_at + 4] + "…",
                purpose=step.params["purpose"])
    ctx.set_slot("page_sent", "yes")  # later steps can point at the page instead of reading out
    if step.params.get("say"):
        await ctx.say_ahead(step.params["say"])
    return None


@step("verify", fields={
    "method": Field("str", default="dob", choices=tuple(DEFAULT_VERIFY), doc="second factor asked for"),
    "say": Field("text", doc="the question; a standard one per method by default"),
    "attempts": Field("int", default=3),
    "on_fail": Field("target", default="agent", doc="where a failed or impossible check goes"),
})
async def run_verify(ctx: StepContext, step: StepDef) -> str | None:
    """Check a second factor against the customer's record. Lasts for this call only."""
    if ctx.state.verified:
        return None
    method = step.params.get("method", "dob")
    if not ctx.profile:
        ctx.publish(ev.Verified, method=method, ok=False)
        raise Jump(step.params.get("on_fail", "agent"), "unverifiable-caller")
    ctx.offer(entry={"slot": method, "length": 8 if method == "dob" else 4, "sensitive": True},
              step_id=step.id)
    ctx.verifying = True
    try:
        return await _ask_factor(ctx, step, method)
    finally:
        ctx.verifying = False


async def _ask_factor(ctx: StepContext, step: StepDef, method: str) -> str | None:
    question = step.params.get("say") or ctx.text(f"verify_{method}") or DEFAULT_VERIFY[method]
    spec = SPEC[method]
    timeout = ctx.flows.hotline.timeouts.get("first_input", 6.0)
    lead = None
    for _attempt in range(int(step.params.get("attempts", 3))):
        inp: CallerInput = await ctx.gather(question, ListenSpec(timeout=timeout, max_keys=8 if method == "dob" else 4),
                                            sensitive=True, lead=lead)
        if ctx.state.verified:  # verified on the visual page meanwhile (the call said so)
            return None
        if inp.kind == "timeout":  # silence is not a wrong answer: "I didn't hear anything"
            lead = ctx.text("no_input")
            ctx.publish(ev.Error, code="no-input", message=f"{ctx.scene.id}.{step.id}" if ctx.scene else "")
            continue
        lead = ctx.text("verify_failed")
        verdict = validate(inp.value, inp.kind, spec)
        if verdict.ok and await ctx.services.verifier.check(ctx.profile, method, verdict.value):
            ctx.state.verified, ctx.state.verified_method = True, method
            ctx.publish(ev.Verified, method=method, ok=True)
            await ctx.say(ctx.text("verified"))
            return None
    ctx.publish(ev.Verified, method=method, ok=False)
    raise Jump(step.params.get("on_fail", "agent"), "verification-failed")
