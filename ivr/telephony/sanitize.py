"""Values that go into AGI commands, channel variables or the dialplan: never CR/LF, quotes
or backslashes (command injection), never unbounded."""

from __future__ import annotations

import re

_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\\'`$;|&<>]')


def agi_value(value: object, limit: int = 200) -> str:
    """A value safe to put inside double quotes in an AGI command."""
    return _UNSAFE.sub("", str(value))[:limit]


def caller_id(value: object) -> str:
    """A caller ID as we keep it: + and digits only (hostile caller IDs lose everything else)."""
    text = str(value or "")
    digits = re.sub(r"\D", "", text)[:20]
    return ("+" + digits) if text.strip().startswith("+") and digits else digits
