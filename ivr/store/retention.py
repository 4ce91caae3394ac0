"""Privacy operations on the store: the retention purge and forgetting one customer.

`purge` deletes what calls said and heard (the turns: prompt, input, intent and slot events,
which carry names, numbers and words), text messages and link tokens, and recordings older
than N days. The calls rows and
their other events stay, so the figures (`ivr stats`) keep their history.

`forget` deletes a customer and what they hold, and strips their calls down to anonymous
aggregates: the calls rows lose the caller (masked number and hash) and keep outcome, length
and scenes; their transcripts, slots and messages go; their predictions stay without the customer, so
precision and acceptance still count them.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ivr.data.records import normalise_phone
from ivr.store.db import connect
from ivr.store.migrations import migrate

_LOGGER = logging.getLogger(__name__)
TURN_TYPES = ("prompt", "input", "intent", "slot")


def purge(db_path: str | Path, days: int, recordings: list[Path] = (), *, now: datetime | None = None) -> dict:
    """Delete turns of calls that started more than `days` days ago, and recording files
    older than that. Returns counts."""
    if days < 1:
        raise ValueError("days must be 1 or more")
    now = now or datetime.now(timezone.utc)
    cutoff = (now - timedelta(days=days)).isoformat(timespec="milliseconds")
    db = connect(db_path, create=False)
    try:
        migrate(db)
        conn = db.conn
        conn.execute("BEGIN IMMEDIATE")
        marks = ",".join("?" * len(TURN_TYPES))
        cur = conn.execute(
            f"DELETE FROM events WHERE type IN ({marks}) AND call_id IN"
            f" (SELECT id FROM calls WHERE started_at < ?)", [*TURN_TYPES, cutoff])
        turns = cur.rowcount
        # text messages name the number and carry links: they go with the turns
        sms = conn.execute("DELETE FROM sms_outbox WHERE created_at < ?", [cutoff]).rowcount
        conn.execute("DELETE FROM link_tokens WHERE expires_at < ?", [now.timestamp() - days * 86400])
        conn.commit()
    finally:
        db.close()
    files = 0
    limit = now.timestamp() - days * 86400
    for folder in recordings:
        for path in Path(folder).rglob("*") if Path(folder).is_dir() else ():
            try:
                if path.is_file() and path.stat().st_mtime < limit:
                    path.unlink()
                    files += 1
            except OSError as exc:
                _LOGGER.warning("purge: cannot delete %s: %s", path, exc)
    return {"turns_deleted": turns, "sms_deleted": sms, "recordings_deleted": files, "before": cutoff}


def forget(db_path: str | Path, number: str) -> dict:
    """Remove the customer with phone `number` and everything that names them."""
    phone = normalise_phone(number)
    if not phone:
        raise ValueError("not a phone number")
    bare = phone.lstrip("+")
    forms = [phone, bare, "+" + bare]
    db = connect(db_path, create=False)
    try:
        migrate(db)
        conn = db.conn
        salt = conn.execute("SELECT value FROM settings WHERE key = 'caller_salt'").fetchone()[0]
        hashes = [hashlib.sha256(f"{salt}:{form}".encode()).hexdigest() for form in dict.fromkeys(forms)]
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(f"SELECT id FROM customers WHERE phone IN ({','.join('?' * len(forms))})",
                               forms).fetchone()
            customers = 0
            if row is not None:
                conn.execute("DELETE FROM customers WHERE id = ?", [row[0]])  # cascades to holdings
                customers = 1
            hmarks = ",".join("?" * len(hashes))
            calls = [r[0] for r in conn.execute(f"SELECT id FROM calls WHERE caller_hash IN ({hmarks})", hashes)]
            events = 0
            for i in range(0, len(calls), 500):
                chunk = calls[i:i + 500]
                marks = ",".join("?" * len(chunk))
                # everything but the bare shape of the call: what was said, slots, SMS, numbers
                events += conn.execute(
                    f"DELETE FROM events WHERE call_id IN ({marks}) AND type NOT IN"
                    " ('scene', 'step', 'transfer', 'hangup', 'proactive', 'error', 'timing', 'verified')",
                    chunk).rowcount
                conn.execute(f"UPDATE calls SET caller = '', caller_hash = '' WHERE id IN ({marks})", chunk)
                conn.execute(f"UPDATE predictions SET customer_id = NULL WHERE call_id IN ({marks})", chunk)
            fmarks = ",".join("?" * len(forms))
            messages = conn.execute(f"DELETE FROM sms_outbox WHERE recipient IN ({fmarks})", forms).rowcount
            conn.execute(f"DELETE FROM link_tokens WHERE phone IN ({fmarks})", forms)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
    finally:
        db.close()
    return {"customers_deleted": customers, "sms_deleted": messages, "calls_anonymised": len(calls), "events_deleted": events,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

