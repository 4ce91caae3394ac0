"""The built-in data actions that the demo hotline's `lookup` steps call."""

from __future__ import annotations

import hashlib
from typing import Any

from ivr.flow.actions import ActionContext, ActionFailed, data_action

STATUS_TEXT = {
    "reported": {"en": "reported and waiting for an assessor", "zh": "已报案，正在等待查勘"},
    "under_review": {"en": "under review by an adjuster", "zh": "正在审核中"},
    "approved": {"en": "approved, and payment is being arranged", "zh": "已核准，正在安排赔款"},
    "paid": {"en": "paid", "zh": "已结案赔付"},
    "rejected": {"en": "declined; a letter explains why", "zh": "未予赔付，详见通知书"},
}
PRODUCT_TEXT = {"car": {"en": "car", "zh": "车险"}, "life": {"en": "life", "zh": "寿险"},
                "home": {"en": "home", "zh": "家财险"}, "health": {"en": "health", "zh": "健康险"}}


def _reference(prefix: str, *parts: Any) -> str:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()
    return prefix + str(int(digest[:8], 16) % 10**8).zfill(8)


@data_action("claims.status")
async def claim_status(ctx: ActionContext, args: dict) -> dict:
    number = str(args.get("number") or ctx.slots.get("claim_no") or "")
    claim = await ctx.directory.find("claims", number)
    if claim is None:
        raise ActionFailed(f"no claim {number}", code="claim-not-found")
    return {**{k: v for k, v in claim.items() if not k.startswith("_")},
            "status_text": STATUS_TEXT.get(claim.get("status"), {"en": claim.get("status"), "zh": claim.get("status")}),
            "own": claim.get("_owner") == ctx.profile.get("phone")}


@data_action("claims.report")
async def claim_report(ctx: ActionContext, args: dict) -> dict:
    reference = _reference("", ctx.caller, args.get("location", ""), args.get("kind", ""))
    return {"number": "2026" + reference[-4:], "location": args.get("location", "")}


@data_action("cards.freeze")
async def card_freeze(ctx: ActionContext, args: dict) -> dict:
    last4 = str(args.get("last4") or ctx.slots.get("card_last4") or "")
    cards = {c.get("last4"): c for c in ctx.profile.get("cards", [])}
    if ctx.profile and last4 not in cards:
        raise ActionFailed(f"no card ending {last4} on this customer", code="card-not-found")
    await ctx.directory.update("cards", last4, {"status": "blocked"})
    return {"last4": last4, "status": "blocked", "reference": _reference("F", ctx.caller, last4)}


@data_action("cards.bill")
async def card_bill(ctx: ActionContext, args: dict) -> dict:
    cards = [c for c in ctx.profile.get("cards", []) if c.get("status") == "active"]
    if not cards:
        raise ActionFailed("no active card on file", code="card-not-found")
    card = cards[0]
    return {"last4": card["last4"], "balance": f"{float(card.get('balance', 0)):.2f}",
            "min_payment": f"{float(card.get('min_payment', 0)):.2f}",
            "due": card.get("statement_due", "")}


@data_action("policies.list")
async def policies_list(ctx: ActionContext, args: dict) -> dict:
    policies = ctx.profile.get("policies", [])
    if not policies:
        raise ActionFailed("no policies on file", code="policy-not-found")
    summary = {
        lang: "; ".join(f"{PRODUCT_TEXT.get(p.get('product'), {}).get(lang, p.get('product'))} "
                        f"{p['number']}" for p in policies)
        for lang in ("en", "zh")}
    return {"count": len(policies), "items": policies, "summary": summary}


@data_action("premium.due")
async def premium_due(ctx: ActionContext, args: dict) -> dict:
    policies = [p for p in ctx.profile.get("policies", []) if p.get("status") == "active"]
    if not policies:
        raise ActionFailed("no active policy on file", code="policy-not-found")
    policy = min(policies, key=lambda p: p.get("renewal_due", "9999"))
    amount = 1200 + int(hashlib.sha256(policy["number"].encode()).hexdigest()[:4], 16) % 2000
    return {"policy": policy["number"], "due": policy.get("renewal_due", ""), "amount": f"{amount}.00"}


@data_action("address.update")
async def address_update(ctx: ActionContext, args: dict) -> dict:
    if not ctx.verified:
        raise ActionFailed("address change needs a verified caller", code="not-verified")
    await ctx.directory.update("customer", ctx.profile.get("phone", ""), {"address": args.get("address", "")})
    return {"reference": _reference("A", ctx.caller, args.get("address", ""))}


@data_action("rescue.dispatch")
async def rescue_dispatch(ctx: ActionContext, args: dict) -> dict:
    return {"reference": _reference("R", ctx.caller, args.get("location", "")), "eta_minutes": 40}


@data_action("complaints.file")
async def complaint_file(ctx: ActionContext, args: dict) -> dict:
    return {"reference": _reference("C", ctx.caller, args.get("summary", ""))}
