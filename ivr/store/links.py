"""Link tokens for the visual page (ARCHITECTURE.md section 7).

A token is 256 random bits, sent once in a text message and never stored: the store keeps its
sha256, bound to the call, the phone number it was sent to and a purpose. It expires (10
minutes by default), is spent by exactly one POST (a GET only shows a Continue page, because
link previewers fetch URLs), and every token of a call is revoked when the call ends.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ivr.store.db import DEFAULT_BUSY_TIMEOUT, connect
from ivr.store.migrations import migrate

TOKEN_BYTES = 32  # 256 bits


@dataclass(frozen=True)
class LinkGrant:
    """What a valid token grants: one call's page, for the number it was sent to."""

    call_id: str
    phone: str
    purpose: str


class LinkRejected(Exception):
    """Why a token does not open the page: unknown, expired, spent, revoked (stable codes)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class LinkTokens:
    """Issue, check and spend link tokens. Thread-safe; calls are short SQLite statements."""

    def __init__(self, path: str | Path, *, ttl: float = 600.0,
                 busy_timeout: float = DEFAULT_BUSY_TIMEOUT, clock=time.time) -> None:
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._db = connect(path, busy_timeout=busy_timeout)
        migrate(self._db)
        self._issued: set[str] = set()  # calls this process texted links for (most calls have none)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def issue(self, call_id: str, phone: str, purpose: str) -> str:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        now = self._clock()
        with self._lock:
            self._db.conn.execute(
                "INSERT INTO link_tokens(token_hash, call_id, phone, purpose, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?)", [token_hash(token), call_id, phone, purpose, now, now + self.ttl])
            self._db.conn.commit()
            self._issued.add(call_id)
        return token

    def check(self, token: str) -> LinkGrant:
        """The grant of an unspent, live token (for the Continue page); raises LinkRejected."""
        with self._lock:
            row = self._db.conn.execute(
                "SELECT call_id, phone, purpose, expires_at, spent_at, revoked_at FROM link_tokens"
                " WHERE token_hash = ?", [token_hash(token)]).fetchone()
        return self._grant(row)

    def spend(self, token: str) -> LinkGrant:
        """Spend the token (once): the grant, or LinkRejected. A replay is 'link-spent'."""
        now = self._clock()
        with self._lock:
            conn = self._db.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT call_id, phone, purpose, expires_at, spent_at, revoked_at FROM link_tokens"
                    " WHERE token_hash = ?", [token_hash(token)]).fetchone()
                grant = self._grant(row)
                conn.execute("UPDATE link_tokens SET spent_at = ? WHERE token_hash = ?", [now, token_hash(token)])
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
        return grant

    def issued_for(self, call_id: str) -> bool:
        """Whether this process texted a link for the call (no SQLite: most calls have none)."""
        with self._lock:
            return call_id in self._issued

    def revoke_call(self, call_id: str) -> int:
        """The call is over: none of its links opens anything any more. A call this process
        issued no link for costs nothing (a link issued by an earlier process dies anyway: its
        call is not running here, so the page says the call has ended)."""
        with self._lock:
            if call_id not in self._issued:
                return 0
            self._issued.discard(call_id)
            cur = self._db.conn.execute(
                "UPDATE link_tokens SET revoked_at = ? WHERE call_id = ? AND revoked_at IS NULL",
                [self._clock(), call_id])
            self._db.conn.commit()
            return cur.rowcount

    def _grant(self, row) -> LinkGrant:
        if row is None:
            raise LinkRejected("link-unknown")
        call_id, phone, purpose, expires_at, spent_at, revoked_at = row
        if revoked_at is not None:
            raise LinkRejected("link-call-ended")
        if spent_at is not None:
            raise LinkRejected("link-spent")
        if self._clock() >= expires_at:
            raise LinkRejected("link-expired")
        return LinkGrant(call_id, phone, purpose)
