"""One customer line of `ivr history import`, checked field by field.

`check_customer(obj)` returns the cleaned record and the problems found. A record with any
error is not loaded at all (never half a customer); warnings (an unknown field) are reported
and the rest loads. The format is documented in README.md ("Caller history").
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Callable

LANGS = ("en", "zh")
PRODUCTS = ("car", "life", "home", "health", "travel", "accident")
POLICY_STATUS = ("active", "lapsed", "cancelled", "pending")
CLAIM_STATUS = ("reported", "under_review", "approved", "paid", "rejected")
CARD_STATUS = ("active", "blocked", "closed")
ACCOUNT_KINDS = ("savings", "checking", "loan", "mortgage")
ACCOUNT_STATUS = ("open", "frozen", "closed")
CASE_STATUS = ("open", "pending", "closed")
MAX_ITEMS = 200  # per list: a customer with more is a broken export, not a customer

_PHONE = re.compile(r"^\+?[0-9]{6,15}$")
_NUMBER = re.compile(r"^[A-Za-z0-9-]{1,32}$")
_SCENE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass
class Checked:
    record: dict[str, Any] | None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def normalise_phone(number: str) -> str:
    """'+86 138-0000-0001' -> '+8613800000001'; the + is kept, anything else but digits dropped."""
    number = (number or "").strip()
    digits = re.sub(r"\D", "", number)[:20]
    return ("+" + digits) if number.startswith("+") and digits else digits


class _Row:
    """Collects problems with their field path while a line is read."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def text(self, obj: dict, key: str, path: str, *, required: bool = False, limit: int = 200,
             pattern: re.Pattern | None = None, choices: tuple = ()) -> str:
        value = obj.get(key)
        where = f"{path}{key}"
        if value is None or value == "":
            if required:
                self.error(where, "missing")
            return ""
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            self.error(where, f"expected text, got {type(value).__name__}")
            return ""
        value = str(value).strip()
        if len(value) > limit or any(ord(ch) < 32 for ch in value):
            self.error(where, f"at most {limit} printable characters")
            return ""
        if pattern is not None and not pattern.match(value):
            self.error(where, f"{value[:40]!r} is not valid")
            return ""
        if choices and value not in choices:
            self.error(where, f"{value[:40]!r} is not one of {', '.join(choices)}")
            return ""
        return value

    def day(self, obj: dict, key: str, path: str, *, required: bool = False,
            past: bool = False) -> str:
        value = self.text(obj, key, path, required=required, limit=10)
        if not value:
            return ""
        try:
            parsed = date.fromisoformat(value)
        except ValueError:
            self.error(f"{path}{key}", f"{value!r} is not a date (YYYY-MM-DD)")
            return ""
        if past and parsed > date.today():
            self.error(f"{path}{key}", f"{value} is in the future")
            return ""
        return parsed.isoformat()

    def moment(self, obj: dict, key: str, path: str) -> str:
        value = self.text(obj, key, path, required=True, limit=32)
        if not value:
            return ""
        try:
            return datetime.fromisoformat(value).replace(tzinfo=None).isoformat(timespec="seconds")
        except ValueError:
            self.error(f"{path}{key}", f"{value!r} is not a date and time (YYYY-MM-DDTHH:MM:SS)")
            return ""

    def amount(self, obj: dict, key: str, path: str) -> float | None:
        value = obj.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or abs(value) > 1e12:
            self.error(f"{path}{key}", "expected a number")
            return None
        return float(value)

    def items(self, obj: dict, key: str, check: Callable[[dict, str], dict | None]) -> list[dict]:
        value = obj.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(key, f"expected a list, got {type(value).__name__}")
            return []
        if len(value) > MAX_ITEMS:
            self.error(key, f"more than {MAX_ITEMS} entries")
            return []
        out = []
        for i, item in enumerate(value):
            path = f"{key}[{i}]."
            if not isinstance(item, dict):
                self.error(f"{key}[{i}]", f"expected an object, got {type(item).__name__}")
                continue
            record = check(item, path)
            if record is not None:
                out.append(record)
        return out


KNOWN = ("phone", "mobile", "name", "lang", "birth_date", "id_last4", "email", "address", "segment",
         "policies", "claims", "cards", "accounts", "cases", "calls")


def check_customer(obj: Any) -> Checked:
    """Check one decoded JSON line. `record` is None when the line has errors."""
    row = _Row()
    if not isinstance(obj, dict):
        return Checked(None, [f"expected a JSON object (one customer), got {type(obj).__name__}"])
    for key in obj:
        if key not in KNOWN:
            row.warnings.append(f"{str(key)[:40]}: unknown field, ignored")
    phone = normalise_phone(row.text(obj, "phone", "", required=True, limit=32))
    if phone and not _PHONE.match(phone):
        row.error("phone", "expected an international number such as +8613800000001")
    mobile = normalise_phone(row.text(obj, "mobile", "", limit=32))
    if mobile and not _PHONE.match(mobile):
        row.error("mobile", "expected an international number")
    record = {
        "phone": phone, "mobile": mobile,
        "name": row.text(obj, "name", "", limit=120),
        "lang": row.text(obj, "lang", "", choices=LANGS) or "",
        "birth_date": row.day(obj, "birth_date", "", past=True),
        "id_last4": row.text(obj, "id_last4", "", pattern=re.compile(r"^[0-9]{3}[0-9Xx]$")).upper(),
        "email": row.text(obj, "email", "", limit=120, pattern=re.compile(r"^[^@\s]+@[^@\s]+$")),
        "address": row.text(obj, "address", "", limit=300),
        "segment": row.text(obj, "segment", "", limit=40),
    }
    record["policies"] = row.items(obj, "policies", lambda o, p: {
        "number": row.text(o, "number", p, required=True, pattern=_NUMBER),
        "product": row.text(o, "product", p, required=True, choices=PRODUCTS),
        "status": row.text(o, "status", p, required=True, choices=POLICY_STATUS),
        "renewal_due": row.day(o, "renewal_due", p),
        "started": row.day(o, "started", p),
        "premium": row.amount(o, "premium", p)})
    record["claims"] = row.items(obj, "claims", lambda o, p: {
        "number": row.text(o, "number", p, required=True, pattern=_NUMBER),
        "policy": row.text(o, "policy", p, pattern=_NUMBER),
        "status": row.text(o, "status", p, required=True, choices=CLAIM_STATUS),
        "opened": row.day(o, "opened", p, required=True, past=True),
        "kind": row.text(o, "kind", p, limit=40),
        "amount": row.amount(o, "amount", p)})
    record["cards"] = row.items(obj, "cards", lambda o, p: {
        "last4": row.text(o, "last4", p, required=True, pattern=re.compile(r"^[0-9]{4}$")),
        "status": row.text(o, "status", p, required=True, choices=CARD_STATUS),
        "statement_due": row.day(o, "statement_due", p),
        "balance": row.amount(o, "balance", p) or 0.0,
        "min_payment": row.amount(o, "min_payment", p) or 0.0,
        "blocked_at": row.day(o, "blocked_at", p, past=True)})
    record["accounts"] = row.items(obj, "accounts", lambda o, p: {
        "number": row.text(o, "number", p, required=True, pattern=_NUMBER),
        "kind": row.text(o, "kind", p, required=True, choices=ACCOUNT_KINDS),
        "status": row.text(o, "status", p, required=True, choices=ACCOUNT_STATUS),
        "balance": row.amount(o, "balance", p) or 0.0})
    record["cases"] = row.items(obj, "cases", lambda o, p: {
        "number": row.text(o, "number", p, required=True, pattern=_NUMBER),
        "kind": row.text(o, "kind", p, required=True, limit=40),
        "status": row.text(o, "status", p, required=True, choices=CASE_STATUS),
        "opened": row.day(o, "opened", p, required=True, past=True),
        "summary": row.text(o, "summary", p, limit=500)})
    record["calls"] = row.items(obj, "calls", lambda o, p: {
        "at": row.moment(o, "at", p),
        "scene": row.text(o, "scene", p, required=True, pattern=_SCENE),
        "resolved": _flag(row, o, "resolved", p)})
    _check_unique(row, record)
    policies = {p["number"] for p in record["policies"]}
    for i, claim in enumerate(record["claims"]):
        if claim["policy"] and claim["policy"] not in policies:
            row.warnings.append(f"claims[{i}].policy: {claim['policy']} is not among this customer's policies")
    if row.errors:
        return Checked(None, row.errors, row.warnings)
    return Checked(record, [], row.warnings)


def _flag(row: _Row, obj: dict, key: str, path: str) -> bool:
    value = obj.get(key, True)
    if not isinstance(value, bool):
        row.error(f"{path}{key}", "expected true or false")
        return True
    return value


def _check_unique(row: _Row, record: dict) -> None:
    for kind, key in (("policies", "number"), ("claims", "number"), ("cards", "last4"),
                      ("accounts", "number"), ("cases", "number")):
        seen: set[str] = set()
        for i, item in enumerate(record[kind]):
            if item[key] in seen:
                row.error(f"{kind}[{i}].{key}", f"{item[key]} appears twice")
            seen.add(item[key])
