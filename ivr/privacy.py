"""Masking of card numbers, ID numbers and phone numbers before they reach logs, store or pages."""

from __future__ import annotations

import re

from stdnum import luhn

_DIGIT_RUN = re.compile(r"\d[\d -]{10,}\d")


def mask_digits(value: str, keep: int = 4) -> str:
    """'20261101' -> '****1101'. A keypad `*` or `#` is shown as it is; other text without
    digits is hidden whole, without revealing its length."""
    digits = re.sub(r"\D", "", value)
    if not digits:
        return value if set(value) <= set("*#") else ("****" if value else "")
    if len(digits) <= keep:
        return "*" * len(digits)
    return "*" * (len(digits) - keep) + digits[-keep:]


def mask_phone(number: str) -> str:
    """'+8613800000001' -> '+86*******0001' (country code and last 4 kept)."""
    clean = re.sub(r"[^\d+]", "", number or "")
    if len(clean) < 7:
        return "*" * len(clean)
    head = clean[:3] if clean.startswith("+") else ""
    return head + "*" * (len(clean) - len(head) - 4) + clean[-4:]


def mask_cards(text: str) -> str:
    """Mask every digit run that passes Luhn (13-19 digits) down to its last 4."""

    def repl(match: re.Match) -> str:
        digits = re.sub(r"\D", "", match.group(0))
        if 13 <= len(digits) <= 19 and luhn.is_valid(digits):
            return mask_digits(digits)
        return match.group(0)

    return _DIGIT_RUN.sub(repl, text)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean_text(text: str, limit: int = 500) -> str:
    """Caller text made safe to keep: no control characters, one line, bounded length."""
    text = _CONTROL.sub(" ", text.replace("\r", " ").replace("\n", " "))
    return " ".join(text.split())[:limit]
