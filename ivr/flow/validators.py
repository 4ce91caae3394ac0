"""Slot validators: digits, regex, Luhn, date, yes/no, amount and choice.

Each validator normalises a raw entry (keys or recognised speech) and says whether it is valid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Callable

from stdnum import luhn

from ivr.nlu.numbers import spoken_digits
from ivr.nlu.yesno import yes_or_no


@dataclass(frozen=True)
class Verdict:
    ok: bool
    value: str = ""
    reason: str = ""


def _digits(raw: str, kind: str) -> str:
    return raw if kind == "dtmf" else spoken_digits(raw)


def _check_digits(raw: str, kind: str, spec: dict) -> Verdict:
    value = _digits(raw, kind)
    if not value.isdigit():
        return Verdict(False, value, "not-digits")
    length = spec.get("length")
    lo = spec.get("min_length", length or 1)
    hi = spec.get("max_length", length or 64)
    if not lo <= len(value) <= hi:
        return Verdict(False, value, "wrong-length")
    return Verdict(True, value)


def _check_luhn(raw: str, kind: str, spec: dict) -> Verdict:
    verdict = _check_digits(raw, kind, {"min_length": spec.get("min_length", 12),
                                        "max_length": spec.get("max_length", 19)})
    if not verdict.ok:
        return verdict
    return verdict if luhn.is_valid(verdict.value) else Verdict(False, verdict.value, "bad-checksum")


def _check_regex(raw: str, kind: str, spec: dict) -> Verdict:
    value = raw.strip()
    if re.fullmatch(spec["pattern"], value):  # as heard first: "P100001" keeps its letter
        return Verdict(True, value)
    if kind == "speech" and spec.get("digits", True) and spoken_digits(value):
        value = spoken_digits(value)
    if re.fullmatch(spec["pattern"], value):
        return Verdict(True, value)
    return Verdict(False, value, "no-match")


def _check_date(raw: str, kind: str, spec: dict) -> Verdict:
    text = raw.strip()
    digits = _digits(text, kind) if kind == "dtmf" or not re.search(r"\d{4}-\d{2}-\d{2}", text) \
        else re.sub(r"\D", "", text)
    if len(digits) != 8:
        return Verdict(False, digits, "not-a-date")
    try:
        value = datetime.strptime(digits, "%Y%m%d").date()
    except ValueError:
        return Verdict(False, digits, "not-a-date")
    today = date.today()
    if spec.get("past") and value > today:
        return Verdict(False, value.isoformat(), "in-future")
    if spec.get("future") and value < today:
        return Verdict(False, value.isoformat(), "in-past")
    if spec.get("min") and value.isoformat() < str(spec["min"]):
        return Verdict(False, value.isoformat(), "too-early")
    if spec.get("max") and value.isoformat() > str(spec["max"]):
        return Verdict(False, value.isoformat(), "too-late")
    return Verdict(True, value.isoformat())


def _check_yesno(raw: str, kind: str, spec: dict) -> Verdict:
    if kind == "dtmf":
        answer = {"1": "yes", "2": "no"}.get(raw)
    else:
        answer = yes_or_no(raw)
    return Verdict(answer is not None, answer or "", "" if answer else "not-yes-no")


def _check_amount(raw: str, kind: str, spec: dict) -> Verdict:
    text = raw.replace(",", "") if kind == "speech" else raw.replace("*", ".")
    match = re.search(r"\d+(?:\.\d{1,2})?", text)
    value = match.group(0) if match else spoken_digits(raw)
    try:
        amount = float(value)
    except ValueError:
        return Verdict(False, value, "not-an-amount")
    if amount < float(spec.get("min", 0)) or amount > float(spec.get("max", 10**9)):
        return Verdict(False, value, "out-of-range")
    return Verdict(True, f"{amount:.2f}")


def _check_text(raw: str, kind: str, spec: dict) -> Verdict:
    value = " ".join(raw.split())[: int(spec.get("max_length", 200))]
    return Verdict(bool(value), value, "" if value else "empty")


def _check_choice(raw: str, kind: str, spec: dict) -> Verdict:
    choices = [str(c) for c in spec.get("choices", [])]
    value = raw.strip().lower()
    if kind == "dtmf" and value.isdigit() and 1 <= int(value) <= len(choices):
        return Verdict(True, choices[int(value) - 1])
    for choice in choices:
        if choice.lower() in value:
            return Verdict(True, choice)
    return Verdict(False, value, "not-a-choice")


VALIDATORS: dict[str, Callable[[str, str, dict], Verdict]] = {
    "digits": _check_digits, "luhn": _check_luhn, "regex": _check_regex, "date": _check_date,
    "yesno": _check_yesno, "amount": _check_amount, "text": _check_text, "choice": _check_choice,
}

# Allowed keys per validator type, for the flow checker.
SPEC_KEYS: dict[str, set[str]] = {
    "digits": {"length", "min_length", "max_length"},
    "luhn": {"min_length", "max_length"},
    "regex": {"pattern", "digits"},
    "date": {"past", "future", "min", "max"},
    "yesno": set(),
    "amount": {"min", "max"},
    "text": {"max_length"},
    "choice": {"choices"},
}


def validate(raw: str, kind: str, spec: dict[str, Any]) -> Verdict:
    """Normalise and check one entry. `kind` is dtmf, speech or click."""
    return VALIDATORS[spec["type"]](raw, kind, spec)


def max_keys(spec: dict[str, Any]) -> int | None:
    """How many keys complete the entry without `#`, when the length is fixed."""
    if spec["type"] == "digits" and spec.get("length"):
        return int(spec["length"])
    if spec["type"] == "date":
        return 8
    if spec["type"] == "yesno":
        return 1
    return None
