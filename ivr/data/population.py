"""`ivr demo-data`: a synthetic, realistic customer population in the import format.

Deterministic for a seed and a day. Mixed products (car, home, life, health insurance, credit
cards, bank accounts); about a quarter of the customers have a claim open, some are due a
bill or a renewal within a month, some had a card blocked, most have past calls, some of them
unresolved. The five named demo customers (README, "Demo callers") come first, as they are.
"""

from __future__ import annotations

import json
import random
from datetime import date, datetime, timedelta
from typing import Any, Iterator

from ivr.data.directory import DEMO_FILE

EN_FIRST = ("Emma", "James", "Olivia", "Liam", "Ava", "Noah", "Mia", "Lucas", "Sophia", "Ethan",
            "Grace", "Henry", "Chloe", "Jack", "Ruby", "Oscar", "Isla", "Leo", "Zoe", "Max")
EN_LAST = ("Smith", "Brown", "Taylor", "Wilson", "Davies", "Evans", "Thomas", "Roberts", "Walker",
           "Wright", "Green", "Hall", "Wood", "Clarke", "Hughes", "Baker", "Chen", "Patel", "Khan", "Lee")
ZH_FAMILY = ("王", "李", "张", "刘", "陈", "杨", "黄", "赵", "周", "吴", "徐", "孙", "马", "朱", "胡", "林")
ZH_GIVEN = ("伟", "芳", "娜", "敏", "静", "强", "磊", "洋", "艳", "勇", "军", "杰", "娟", "涛", "明", "超",
            "秀英", "建华", "晓东", "丽华", "海燕", "志强", "文博", "子涵")
SCENES = ("claim_status", "claim_report", "policy_query", "premium_payment", "card_bill", "card_lost",
          "roadside_rescue", "address_change", "complaint")


def named_customers() -> list[dict[str, Any]]:
    return [json.loads(line) for line in DEMO_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]


def population(count: int = 1000, *, seed: int = 7, today: date | None = None) -> Iterator[dict[str, Any]]:
    """`count` customers (the named ones included), as import records."""
    today = today or date.today()
    rng = random.Random(seed)
    named = named_customers()
    yield from named[:count]
    numbers = _Numbers()
    for i in range(max(0, count - len(named))):
        yield _customer(rng, i, today, numbers)


class _Numbers:
    def __init__(self) -> None:
        self.policy = 200000
        self.claim = 5000  # the named customers' claims are below 2000 within a year

    def next_policy(self) -> str:
        self.policy += 1
        return f"P{self.policy}"

    def next_claim(self, opened: date) -> str:
        self.claim += 1
        return f"{opened.year}{self.claim % 10000:04d}"  # 8 digits, the year first


def _day(today: date, lo: int, hi: int, rng: random.Random) -> date:
    return today + timedelta(days=rng.randint(lo, hi))


def _customer(rng: random.Random, i: int, today: date, numbers: _Numbers) -> dict[str, Any]:
    zh = rng.random() < 0.5
    if zh:
        phone = f"+86139{i:08d}"
        name = rng.choice(ZH_FAMILY) + rng.choice(ZH_GIVEN)
    else:
        phone = f"+1555{2000000 + i:07d}"
        name = f"{rng.choice(EN_FIRST)} {rng.choice(EN_LAST)}"
    birth = date(rng.randint(1950, 2004), rng.randint(1, 12), rng.randint(1, 28))
    customer: dict[str, Any] = {
        "phone": phone, "name": name, "lang": "zh" if zh else "en", "birth_date": birth.isoformat(),
        "id_last4": f"{rng.randint(0, 9999):04d}", "segment": rng.choice(("retail", "retail", "premier")),
        "policies": [], "claims": [], "cards": [], "accounts": [], "calls": []}
    for product in rng.sample(("car", "home", "life", "health"), rng.choice((0, 1, 1, 2, 2, 3))):
        status = "active" if rng.random() < 0.9 else "lapsed"
        renewal = _day(today, -20, 365, rng) if status == "active" else _day(today, -200, -1, rng)
        customer["policies"].append({"number": numbers.next_policy(), "product": product, "status": status,
                                     "renewal_due": renewal.isoformat(),
                                     "premium": float(rng.randint(800, 6000))})
    for policy in customer["policies"]:
        if policy["product"] in ("car", "home", "health") and rng.random() < 0.35:
            opened = _day(today, -60, -1, rng)
            status = rng.choices(("reported", "under_review", "approved", "paid", "rejected"),
                                 (2, 3, 2, 3, 1))[0]
            customer["claims"].append({"number": numbers.next_claim(opened), "policy": policy["number"],
                                       "status": status, "opened": opened.isoformat()})
    for _ in range(rng.choice((0, 1, 1, 1, 2))):
        last4 = f"{rng.randint(0, 9999):04d}"
        if any(c["last4"] == last4 for c in customer["cards"]):
            continue
        blocked = rng.random() < 0.06
        balance = round(rng.choice((0, rng.uniform(50, 20000))), 2)
        customer["cards"].append({
            "last4": last4, "status": "blocked" if blocked else "active",
            "statement_due": _day(today, -5, 40, rng).isoformat(), "balance": balance,
            "min_payment": round(max(balance * 0.05, 25.0) if balance else 0, 2),
            **({"blocked_at": _day(today, -30, -1, rng).isoformat()} if blocked else {})})
    if rng.random() < 0.4:
        customer["accounts"].append({"number": f"A{7000000 + i}", "kind": rng.choice(("savings", "checking")),
                                     "status": "open", "balance": round(rng.uniform(0, 90000), 2)})
    customer["calls"] = _past_calls(rng, customer, today)
    return customer


def _past_calls(rng: random.Random, customer: dict, today: date) -> list[dict[str, Any]]:
    """Past calls that follow the customer's situation: claims bring claim calls, cards bills."""
    likely = list(SCENES)
    if customer["claims"]:
        likely += ["claim_status"] * 4
    if customer["cards"]:
        likely += ["card_bill"] * 2
    calls = []
    for _ in range(rng.choice((0, 0, 1, 1, 2, 3, 4))):
        at = datetime.combine(_day(today, -90, -1, rng), datetime.min.time()) + timedelta(
            hours=rng.randint(8, 19), minutes=rng.randint(0, 59))
        calls.append({"at": at.isoformat(timespec="seconds"), "scene": rng.choice(likely),
                      "resolved": rng.random() < 0.8})
    return sorted(calls, key=lambda c: c["at"])
