"""An in-memory customer directory read from JSON lines (the `ivr history import` format).

It backs the simulator and the demo until the SQLite store (caller-history issue) replaces it.
Profiles carry derived facts that flows test: the open claim, a blocked card, a bill due soon.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

_LOGGER = logging.getLogger(__name__)
OPEN_CLAIM = ("reported", "under_review", "approved")
DEMO_FILE = Path(__file__).with_name("demo_customers.jsonl")


def normalise_phone(number: str) -> str:
    """Digits with a leading + kept; anything else (quotes, CR/LF, letters) dropped."""
    number = (number or "").strip()
    digits = re.sub(r"\D", "", number)[:20]
    return ("+" + digits) if number.startswith("+") and digits else digits


class MemoryDirectory:
    def __init__(self, customers: list[dict[str, Any]] | None = None, today: date | None = None) -> None:
        self._by_phone: dict[str, dict[str, Any]] = {}
        self._today = today
        for customer in customers or []:
            self.add(customer)

    @classmethod
    def from_jsonl(cls, path: Path = DEMO_FILE, today: date | None = None) -> "MemoryDirectory":
        customers = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    customers.append(json.loads(line))
                except json.JSONDecodeError:
                    _LOGGER.warning("%s:%d: not JSON; skipped", path, n)
        return cls(customers, today)

    def add(self, customer: dict[str, Any]) -> None:
        phone = normalise_phone(str(customer.get("phone", "")))
        if phone:
            self._by_phone[phone] = copy.deepcopy({**customer, "phone": phone})

    def today(self) -> date:
        return self._today or date.today()

    async def profile(self, phone: str) -> dict[str, Any] | None:
        customer = self._by_phone.get(normalise_phone(phone))
        return self._derive(copy.deepcopy(customer)) if customer else None

    async def find(self, kind: str, number: str) -> dict[str, Any] | None:
        for customer in self._by_phone.values():
            for item in customer.get(kind, []):
                if str(item.get("number") or item.get("last4")) == str(number):
                    return {**copy.deepcopy(item), "_owner": customer["phone"]}
        return None

    async def update(self, kind: str, number: str, changes: dict[str, Any]) -> None:
        for customer in self._by_phone.values():
            if kind == "customer" and customer["phone"] == number:
                customer.update(changes)
                return
            for item in customer.get(kind, []):
                if str(item.get("number") or item.get("last4")) == str(number):
                    item.update(changes)
                    return

    def _derive(self, c: dict[str, Any]) -> dict[str, Any]:
        today = self.today()
        soon = (today + timedelta(days=30)).isoformat()
        claims = sorted(c.get("claims", []), key=lambda x: x.get("opened", ""), reverse=True)
        c["open_claims"] = [x for x in claims if x.get("status") in OPEN_CLAIM]
        c["open_claim"] = c["open_claims"][0] if c["open_claims"] else None
        c["blocked_cards"] = [x for x in c.get("cards", []) if x.get("status") == "blocked"]
        c["bill_due"] = next((x for x in c.get("cards", []) if x.get("status") == "active"
                              and today.isoformat() <= str(x.get("statement_due", "")) <= soon), None)
        c["renewal_due"] = next((p for p in c.get("policies", []) if p.get("status") == "active"
                                 and today.isoformat() <= str(p.get("renewal_due", "")) <= soon), None)
        cutoff = (today - timedelta(days=7)).isoformat()
        calls = sorted(c.get("calls", []), key=lambda x: x.get("at", ""), reverse=True)
        c["recent_unresolved"] = next((x for x in calls if not x.get("resolved", True)
                                       and str(x.get("at", "")) >= cutoff), None)
        c["mobile"] = c.get("mobile") or c["phone"]
        return c
