"""`branch` conditions: a small, safe language over slots, profile, flags, time and calendar.

A condition is a mapping with one subject and at most one operator:
  {slot: claim_no, exists: true}   {profile: lang, eq: zh}   {flag: hotline.closed}
  {verified: true}   {business_hours: true}   {holiday: true}   {weekday: [sat, sun]}
  {lang: zh}   {known_caller: true}   {all: [...]}   {any: [...]}   {not: {...}}
No `eval`: flow files are data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Protocol

VALUE_SUBJECTS = ("slot", "profile", "flag")
BOOL_SUBJECTS = ("verified", "business_hours", "holiday", "known_caller")
OPERATORS = ("eq", "ne", "in", "not_in", "gt", "ge", "lt", "le", "matches", "exists")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Calendar(Protocol):
    def is_open(self, when: datetime) -> bool: ...
    def is_holiday(self, when: datetime) -> bool: ...
    def now(self) -> datetime: ...


@dataclass
class Scope:
    """What a condition may look at during one call."""

    slots: dict[str, Any]
    profile: dict[str, Any]
    flag: Callable[[str], Any]
    calendar: Calendar
    verified: bool = False
    lang: str = "en"
    known_caller: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def check(cond: Any) -> list[tuple[tuple, str]]:
    """Problems in a condition as (sub-path, message); empty when it is well formed."""
    if not isinstance(cond, dict) or not cond:
        return [((), "a condition is a mapping such as {slot: x, eq: 1}")]
    keys = set(cond)
    if keys & {"all", "any"}:
        (name,) = keys & {"all", "any"} if len(keys) == 1 else (None,)
        if name is None or not isinstance(cond[name], list) or not cond[name]:
            return [((), "`all`/`any` take a non-empty list of conditions and nothing else")]
        return [((name, i) + p, m) for i, c in enumerate(cond[name]) for p, m in check(c)]
    if "not" in keys:
        if len(keys) != 1:
            return [((), "`not` takes one condition and nothing else")]
        return [(("not",) + p, m) for p, m in check(cond["not"])]
    subjects = [k for k in cond if k in VALUE_SUBJECTS + BOOL_SUBJECTS + ("weekday", "lang")]
    if len(subjects) != 1:
        return [((), "name exactly one of: " + ", ".join(VALUE_SUBJECTS + BOOL_SUBJECTS + ("weekday", "lang")))]
    subject = subjects[0]
    ops = [k for k in cond if k != subject]
    bad = [k for k in ops if k not in OPERATORS]
    if bad:
        return [((bad[0],), f"unknown operator {bad[0]!r} (known: {', '.join(OPERATORS)})")]
    if len(ops) > 1:
        return [((), "use one operator per condition; combine with all/any")]
    if subject in VALUE_SUBJECTS and not isinstance(cond[subject], str):
        return [((subject,), f"`{subject}` names a field, e.g. {subject}: claim_no")]
    if subject == "weekday":
        days = cond["weekday"] if isinstance(cond["weekday"], list) else [cond["weekday"]]
        if any(d not in WEEKDAYS for d in days):
            return [(("weekday",), "weekdays are mon..sun")]
    if ops == ["matches"]:
        try:
            re.compile(str(cond["matches"]))
        except re.error as exc:
            return [(("matches",), f"bad regex: {exc}")]
    if ops and ops[0] in ("in", "not_in") and not isinstance(cond[ops[0]], list):
        return [((ops[0],), f"`{ops[0]}` takes a list")]
    return []


def _dig(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def _compare(value: Any, op: str | None, operand: Any) -> bool:
    if op is None:
        return bool(value) and str(value).lower() not in ("0", "off", "false", "no")
    if op == "exists":
        present = value not in (None, "", [], {})
        return present if operand else not present
    if op == "eq":
        return _norm(value) == _norm(operand)
    if op == "ne":
        return _norm(value) != _norm(operand)
    if op == "in":
        return _norm(value) in [_norm(o) for o in operand]
    if op == "not_in":
        return _norm(value) not in [_norm(o) for o in operand]
    if op == "matches":
        return value is not None and re.search(str(operand), str(value)) is not None
    if value in (None, "") or operand is None:  # a missing value is neither more nor less
        return False
    try:
        a, b = float(value), float(operand)
    except (TypeError, ValueError):
        a, b = str(value), str(operand)  # ISO dates compare as text
    return {"gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b}[op]


def _norm(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value).strip().lower()


def evaluate(cond: dict, scope: Scope) -> bool:
    if "all" in cond:
        return all(evaluate(c, scope) for c in cond["all"])
    if "any" in cond:
        return any(evaluate(c, scope) for c in cond["any"])
    if "not" in cond:
        return not evaluate(cond["not"], scope)
    op = next((k for k in cond if k in OPERATORS), None)
    operand = cond.get(op) if op else None
    if "slot" in cond:
        return _compare(_dig(scope.slots, cond["slot"]), op, operand)
    if "profile" in cond:
        return _compare(_dig(scope.profile, cond["profile"]), op, operand)
    if "flag" in cond:
        return _compare(scope.flag(cond["flag"]), op, operand)
    if "lang" in cond:
        return _compare(scope.lang, op or "eq", operand if op else cond["lang"])
    now = scope.calendar.now()
    if "weekday" in cond:
        days = cond["weekday"] if isinstance(cond["weekday"], list) else [cond["weekday"]]
        return WEEKDAYS[now.weekday()] in days
    subject = next(k for k in cond if k in BOOL_SUBJECTS)
    actual = {
        "verified": scope.verified,
        "business_hours": lambda: scope.calendar.is_open(now),
        "holiday": lambda: scope.calendar.is_holiday(now),
        "known_caller": scope.known_caller,
    }[subject]
    actual = actual() if callable(actual) else actual
    return _compare(actual, op or "eq", operand if op else cond[subject])
