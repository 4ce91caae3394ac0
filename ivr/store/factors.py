"""Verification factors (date of birth, last 4 of the ID document) as salted hashes.

scrypt with a random salt per factor: a copy of the database does not show the factors, and
each guess against a stolen copy costs about 5 ms. The factors are short (a 4-digit number has
10,000 values), so the real defence is the rate limit on live attempts; the hash keeps them out
of plain sight and out of backups.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

_N, _R, _P = 2**11, 8, 1
_PREFIX = "scrypt"


def normalise(method: str, value: str) -> str:
    """The canonical form hashed and compared: digits only for a date ('1985-04-12' ->
    '19850412'); digits and X for an ID tail, upper case."""
    value = (value or "").strip()
    if method == "dob":
        return re.sub(r"\D", "", value)
    return re.sub(r"[^0-9X]", "", value.upper())


def hash_factor(method: str, value: str) -> str:
    """'scrypt$<salt>$<hash>' for a non-empty value; '' for none (no factor on file)."""
    canonical = normalise(method, value)
    if not canonical:
        return ""
    salt = secrets.token_bytes(16)
    return "$".join((_PREFIX, _b64(salt), _b64(_scrypt(canonical, salt))))


def verify_factor(method: str, stored: str, answer: str) -> bool:
    """Does `answer` match the stored hash? Constant time; False when nothing is on file."""
    try:
        prefix, salt, digest = stored.split("$")
    except ValueError:
        return False
    canonical = normalise(method, answer)
    if prefix != _PREFIX or not canonical:
        return False
    expected = base64.urlsafe_b64decode(digest + "==")
    return hmac.compare_digest(_scrypt(canonical, base64.urlsafe_b64decode(salt + "==")), expected)


def _scrypt(value: str, salt: bytes) -> bytes:
    return hashlib.scrypt(value.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")
