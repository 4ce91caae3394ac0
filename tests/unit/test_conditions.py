"""`branch` / `when` conditions: the checker's messages and evaluation over a Scope."""

from __future__ import annotations

from datetime import datetime

import pytest

from ivr.flow.conditions import Scope, check, evaluate
from ivr.services import BusinessCalendar

HOURS = {d: "09:00-17:00" for d in ("mon", "tue", "wed", "thu", "fri")}


def scope(at=datetime(2026, 12, 1, 10, 0), **kw) -> Scope:  # a Tuesday morning
    cal = BusinessCalendar(HOURS, "Asia/Shanghai", "CN", ("2026-12-02",), ("2026-12-05",), now=lambda: at)
    flags = kw.pop("flags", {})
    base = dict(slots={"n": "250", "kind": "car", "claim": {"status": "paid", "items": ["a", "b"]},
                       "due": "2026-12-01", "empty": "", "zero": 0},
                profile={"lang": "zh", "cards": [{"last4": "4321"}]}, flag=flags.get, calendar=cal)
    base.update(kw)
    return Scope(**base)


# -- check: well formed ------------------------------------------------------------------------

@pytest.mark.parametrize("cond", [
    {"slot": "x"}, {"slot": "x", "exists": True}, {"profile": "lang", "eq": "zh"}, {"flag": "closed"},
    {"verified": True}, {"business_hours": False}, {"holiday": True}, {"known_caller": True},
    {"weekday": ["sat", "sun"]}, {"weekday": "mon"}, {"lang": "zh"},
    {"slot": "n", "in": [1, 2]}, {"slot": "n", "matches": "^\\d+$"},
    {"all": [{"lang": "en"}, {"not": {"slot": "x"}}]}, {"any": [{"holiday": True}]},
])
def test_check_accepts(cond):
    assert check(cond) == []


@pytest.mark.parametrize("cond,problems", [
    ("lang == zh", [((), "a condition is a mapping such as {slot: x, eq: 1}")]),
    ({}, [((), "a condition is a mapping such as {slot: x, eq: 1}")]),
    (None, [((), "a condition is a mapping such as {slot: x, eq: 1}")]),
    ({"all": []}, [((), "`all`/`any` take a non-empty list of conditions and nothing else")]),
    ({"any": {"lang": "zh"}}, [((), "`all`/`any` take a non-empty list of conditions and nothing else")]),
    ({"all": [{"lang": "zh"}], "any": [{"lang": "en"}]},
     [((), "`all`/`any` take a non-empty list of conditions and nothing else")]),
    ({"all": [{"lang": "zh"}], "slot": "x"},
     [((), "`all`/`any` take a non-empty list of conditions and nothing else")]),
    ({"not": {"lang": "zh"}, "slot": "x"}, [((), "`not` takes one condition and nothing else")]),
    ({"slot": "x", "profile": "y"},
     [((), "name exactly one of: slot, profile, flag, verified, business_hours, holiday, known_caller, "
           "weekday, lang")]),
    ({"eq": 1}, [((), "name exactly one of: slot, profile, flag, verified, business_hours, holiday, "
                      "known_caller, weekday, lang")]),
    ({"slot": "x", "equals": 1},
     [(("equals",), "unknown operator 'equals' (known: eq, ne, in, not_in, gt, ge, lt, le, matches, exists)")]),
    ({"slot": "x", "gt": 1, "lt": 5}, [((), "use one operator per condition; combine with all/any")]),
    ({"slot": 5, "eq": 1}, [(("slot",), "`slot` names a field, e.g. slot: claim_no")]),
    ({"flag": ["a"]}, [(("flag",), "`flag` names a field, e.g. flag: claim_no")]),
    ({"weekday": ["monday"]}, [(("weekday",), "weekdays are mon..sun")]),
    ({"weekday": "xyz"}, [(("weekday",), "weekdays are mon..sun")]),
    ({"slot": "x", "in": "abc"}, [(("in",), "`in` takes a list")]),
    ({"slot": "x", "not_in": 3}, [(("not_in",), "`not_in` takes a list")]),
])
def test_check_messages(cond, problems):
    assert check(cond) == problems


def test_check_bad_regex_and_nested_paths():
    (path, message), = check({"slot": "x", "matches": "(unclosed"})
    assert path == ("matches",) and message.startswith("bad regex: ")
    assert check({"all": [{"lang": "zh"}, {"slot": "x", "bogus": 1}]}) == [
        (("all", 1, "bogus"), "unknown operator 'bogus' (known: eq, ne, in, not_in, gt, ge, lt, le, matches, exists)")]
    assert check({"not": {"any": [{"weekday": ["funday"]}]}}) == [
        (("not", "any", 0, "weekday"), "weekdays are mon..sun")]


# -- evaluate ----------------------------------------------------------------------------------

@pytest.mark.parametrize("cond,want", [
    ({"slot": "n", "eq": 250}, True), ({"slot": "n", "eq": "250"}, True), ({"slot": "n", "ne": 250}, False),
    ({"slot": "kind", "eq": " CAR "}, True), ({"slot": "kind", "in": ["home", "Car"]}, True),
    ({"slot": "kind", "not_in": ["home", "car"]}, False),
    ({"slot": "n", "gt": 100}, True), ({"slot": "n", "ge": 250}, True), ({"slot": "n", "lt": 250}, False),
    ({"slot": "n", "le": 250}, True), ({"slot": "n", "gt": "99"}, True),
    ({"slot": "due", "lt": "2026-12-31"}, True), ({"slot": "due", "gt": "2026-12-31"}, False),
    ({"slot": "missing", "gt": 0}, False), ({"slot": "missing", "lt": 0}, False),
    ({"slot": "missing", "le": "2026-12-31"}, False), ({"slot": "empty", "ge": 0}, False),
    ({"slot": "missing", "eq": ""}, True), ({"slot": "missing", "ne": "x"}, True),
    ({"slot": "missing", "exists": True}, False), ({"slot": "empty", "exists": True}, False),
    ({"slot": "zero", "exists": True}, True), ({"slot": "zero"}, False), ({"slot": "kind"}, True),
    ({"slot": "claim.status", "eq": "paid"}, True), ({"slot": "claim.items.1", "eq": "b"}, True),
    ({"slot": "claim.items.5", "exists": True}, False), ({"slot": "claim.status.deeper"}, False),
    ({"slot": "kind", "matches": "^c"}, True), ({"slot": "missing", "matches": ".*"}, False),
    ({"profile": "lang", "eq": "zh"}, True), ({"profile": "cards.0.last4", "eq": "4321"}, True),
    ({"lang": "en"}, True), ({"lang": "zh"}, False), ({"lang": "x", "in": ["en", "zh"]}, True),
    ({"verified": True}, False), ({"verified": False}, True), ({"known_caller": False}, True),
    ({"business_hours": True}, True), ({"holiday": False}, True), ({"weekday": "tue"}, True),
    ({"weekday": ["sat", "sun"]}, False),
    ({"all": [{"lang": "en"}, {"slot": "n", "gt": 1}]}, True), ({"all": [{"lang": "en"}, {"lang": "zh"}]}, False),
    ({"any": [{"lang": "zh"}, {"slot": "kind", "eq": "car"}]}, True), ({"any": [{"lang": "zh"}]}, False),
    ({"not": {"lang": "zh"}}, True), ({"not": {"not": {"lang": "zh"}}}, False),
])
def test_evaluate(cond, want):
    assert check(cond) == []
    assert evaluate(cond, scope()) is want


@pytest.mark.parametrize("value,want", [("1", True), ("on", True), ("yes", True), ("0", False),
                                        ("off", False), ("false", False), ("no", False), ("", False),
                                        (None, False)])
def test_flag_truthiness(value, want):
    flags = {} if value is None else {"f": value}
    assert evaluate({"flag": "f"}, scope(flags=flags)) is want


def test_flags_compare_and_verified_scope():
    assert evaluate({"flag": "level", "eq": "red"}, scope(flags={"level": "RED"}))
    assert evaluate({"verified": True}, scope(verified=True))
    assert evaluate({"known_caller": True}, scope(known_caller=True))
    assert evaluate({"lang": "zh"}, scope(lang="zh"))


@pytest.mark.parametrize("at,hours,holiday,weekday", [
    (datetime(2026, 12, 1, 10, 0), True, False, "tue"),
    (datetime(2026, 12, 1, 8, 59), False, False, "tue"),
    (datetime(2026, 12, 1, 17, 0), False, False, "tue"),
    (datetime(2026, 12, 2, 10, 0), False, True, "wed"),  # an extra holiday
    (datetime(2026, 12, 5, 10, 0), True, False, "sat"),  # an extra working Saturday: Monday's hours
    (datetime(2026, 12, 6, 10, 0), False, False, "sun"),
    (datetime(2026, 10, 1, 10, 0), False, True, "thu"),  # National Day
    (datetime(2027, 1, 1, 10, 0), False, True, "fri"),  # New Year's Day
])
def test_calendar_conditions(at, hours, holiday, weekday):
    s = scope(at=at)
    assert evaluate({"business_hours": True}, s) is hours
    assert evaluate({"holiday": True}, s) is holiday
    assert evaluate({"weekday": weekday}, s) is True
    assert evaluate({"not": {"business_hours": True}}, s) is (not hours)
