"""An in-memory customer directory read from JSON lines (the `ivr history import` format).

It backs the simulator when no store is given (`ivr simulate` without `--db`) and unit tests;
live calls use the SQLite history (`ivr.store.history`).
Profiles carry derived facts that flows test: the open claim, a blocked card, a bill due soon.
"""

from __future__ import annotations

import copy
import json
import logging
from datetime import date
from pathlib import Path
from typing import Any

from ivr.data.profile import derive_facts
from ivr.data.records import normalise_phone

_LOGGER = logging.getLogger(__name__)
DEMO_FILE = Path(__file__).with_name("demo_customers.jsonl")


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
        return derive_facts(c, self.today())
