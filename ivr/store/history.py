"""The caller history in SQLite: who is calling, what they hold, what they called about before.

`HistoryStore` is the CustomerDirectory of live calls (and of `ivr simulate --db`): it loads a
caller's profile by caller ID (a few indexed reads, well under 10 ms), finds and updates
holdings for data actions, and learns from every call it is attached to: the scenes the call
went through become contacts (what proactive scores read), and each proactive question becomes
a prediction with its outcome. Reads run in worker threads, each with its own connection;
writes go through one connection under a lock (`_write`), in short BEGIN IMMEDIATE
transactions, so the event loop never waits on SQLite.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ivr import events as ev
from ivr.data.profile import derive_facts
from ivr.data.records import normalise_phone
from ivr.flow.state import CallState
from ivr.store.db import DEFAULT_BUSY_TIMEOUT, connect
from ivr.store.factors import verify_factor
from ivr.store.migrations import migrate

_LOGGER = logging.getLogger(__name__)
RECENT_CALLS = 30  # past calls a profile carries (for the proactive score)
OUTCOMES_TTL = 30.0  # seconds the prediction outcomes are cached
NAVIGATION = ("welcome", "main_menu", "anything_else")  # scenes every call passes: not a reason
UPDATABLE = {"cards": ("status",), "claims": ("status",), "policies": ("status", "renewal_due"),
             "customer": ("address", "mobile", "email", "lang")}


class HistoryStore:
    def __init__(self, path: str | Path, *, today: Callable[[], date] | None = None,
                 busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> None:
        self.path = Path(path)
        self._today = today
        self._now: Callable[[], datetime] | None = None
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._writer = connect(self.path, busy_timeout=busy_timeout)  # blocking: build at start-up
        migrate(self._writer)
        self._salt = self._writer.execute(
            "SELECT value FROM settings WHERE key = 'caller_salt'").fetchone()[0]
        self._outcomes: tuple[float, dict[str, tuple[int, int]]] = (0.0, {})
        self._pending: dict[str, tuple[list[dict], Callable[[], None]]] = {}  # call_id -> predictions
        self._tasks: set[asyncio.Task] = set()

    def today(self) -> date:
        return self._today() if self._today else date.today()

    def set_clock(self, now: Callable[[], datetime] | None) -> None:
        """The time calls happen at (a simulated call's `at:`): "due soon" is measured from its
        day, and calls are recorded at it. None: the real clock."""
        self._now = now
        self._today = (lambda: now().date()) if now else None

    def customer_count(self) -> int:
        return self._reader().execute("SELECT COUNT(*) FROM customers").fetchone()[0]

    def close(self) -> None:
        with self._write_lock:
            self._writer.close()

    # ---- reads (worker threads) ------------------------------------------------------

    def _reader(self):
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = connect(self.path, busy_timeout=self._busy_timeout)
        return db.conn

    async def profile(self, phone: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self.profile_now, phone)

    def profile_now(self, phone: str) -> dict[str, Any] | None:
        """The caller's profile with its derived facts, or None for an unknown number."""
        phone = normalise_phone(phone)
        if not phone:
            return None
        conn = self._reader()
        row = conn.execute(
            "SELECT id, phone, mobile, name, lang, email, address, segment FROM customers"
            " WHERE phone IN (?, ?, ?)", _phone_forms(phone)).fetchone()
        if row is None:
            return None
        cid = row[0]
        profile = dict(zip(("_id", "phone", "mobile", "name", "lang", "email", "address", "segment"), row))
        profile["policies"] = _rows(conn, "SELECT number, product, status, renewal_due, premium, started"
                                          " FROM policies WHERE customer_id = ? ORDER BY number", cid)
        profile["claims"] = _rows(conn, "SELECT number, policy, status, opened, kind, amount FROM claims"
                                        " WHERE customer_id = ? ORDER BY opened DESC", cid)
        profile["cards"] = _rows(conn, "SELECT last4, status, statement_due, balance, min_payment, blocked_at"
                                       " FROM cards WHERE customer_id = ? ORDER BY last4", cid)
        profile["accounts"] = _rows(conn, "SELECT number, kind, status, balance FROM accounts"
                                          " WHERE customer_id = ? ORDER BY number", cid)
        profile["cases"] = _rows(conn, "SELECT number, kind, status, opened, summary FROM cases"
                                       " WHERE customer_id = ? ORDER BY opened DESC", cid)
        calls = _rows(conn, "SELECT call_key AS call, at, scene, resolved FROM contacts"
                            " WHERE customer_id = ? AND call_key IN (SELECT call_key FROM contacts"
                            " WHERE customer_id = ? GROUP BY call_key ORDER BY MAX(at) DESC LIMIT ?)"
                            " ORDER BY at DESC", cid, cid, RECENT_CALLS)
        profile["calls"] = [{**c, "resolved": bool(c["resolved"])} for c in calls]
        return derive_facts(profile, self.today())

    async def find(self, kind: str, number: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self._find, kind, str(number))

    def _find(self, kind: str, number: str) -> dict[str, Any] | None:
        key = {"claims": "number", "policies": "number", "accounts": "number", "cases": "number",
               "cards": "last4"}.get(kind)
        if key is None:
            return None
        conn = self._reader()
        cur = conn.execute(f"SELECT t.*, c.phone AS _owner FROM {kind} t JOIN customers c"
                           f" ON c.id = t.customer_id WHERE t.{key} = ? LIMIT 1", [number])
        row = cur.fetchone()
        if row is None:
            return None
        item = dict(zip([d[0] for d in cur.description], row))
        item.pop("customer_id", None)
        return item

    async def outcomes(self, names: list[str]) -> dict[str, tuple[int, int]]:
        """(asked, right) per proactive rule, over all finished calls; cached for 30 s."""
        at, cached = self._outcomes
        if time.monotonic() - at > OUTCOMES_TTL:
            cached = await asyncio.to_thread(self._read_outcomes)
            self._outcomes = (time.monotonic(), cached)
        return {n: cached[n] for n in names if n in cached}

    def _read_outcomes(self) -> dict[str, tuple[int, int]]:
        rows = self._reader().execute(
            "SELECT name, COUNT(*), SUM(correct) FROM predictions WHERE correct IS NOT NULL GROUP BY name")
        return {name: (asked, int(right or 0)) for name, asked, right in rows}

    def factor_hash(self, customer_id: int, method: str) -> str:
        column = {"dob": "dob_hash", "id_last4": "id4_hash"}.get(method)
        if column is None:
            return ""
        row = self._reader().execute(f"SELECT {column} FROM customers WHERE id = ?", [customer_id]).fetchone()
        return row[0] if row else ""

    # ---- writes (one connection, one at a time) -----------------------------------------

    def _write(self, fn: Callable[[Any], Any]) -> Any:
        with self._write_lock:
            conn = self._writer.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            return result

    async def update(self, kind: str, number: str, changes: dict[str, Any]) -> None:
        allowed = UPDATABLE.get(kind, ())
        changes = {k: str(v) for k, v in changes.items() if k in allowed}
        if not changes:
            return
        if kind == "cards" and changes.get("status") == "blocked":
            changes["blocked_at"] = self.today().isoformat()
        table, key = {"cards": ("cards", "last4"), "claims": ("claims", "number"),
                      "policies": ("policies", "number"), "customer": ("customers", "phone")}[kind]
        if kind == "customer":
            number = normalise_phone(number)
        sets = ", ".join(f"{k} = ?" for k in changes)
        await asyncio.to_thread(self._write, lambda conn: conn.execute(
            f"UPDATE {table} SET {sets} WHERE {key} = ?", [*changes.values(), number]))

    # ---- learning from calls --------------------------------------------------------------

    def attach(self, stream: ev.EventStream, state: CallState) -> None:
        """Keep the call's proactive questions until `finish()` writes them with their outcome."""
        predictions: list[dict] = []

        def on_event(event: ev.Event) -> None:
            if isinstance(event, ev.Proactive):
                predictions.append({"name": event.prediction, "scene": event.scene,
                                    "score": event.score, "parts": event.parts or {},
                                    "accepted": event.accepted})

        for event in list(stream.history):
            on_event(event)
        self._pending[state.call_id] = (predictions, stream.subscribe(on_event))

    def finish(self, call_id: str, state: CallState, *, known: bool | None = None) -> None:
        """Record the call as a contact of its customer, and its predictions' outcomes, off the
        event loop. Returns at once. `known=False`: the call's profile look-up found no customer,
        so a call without questions has nothing to record (no look-up again, no thread)."""
        predictions, unsubscribe = self._pending.pop(call_id, ([], None))
        if unsubscribe is not None:
            unsubscribe()
        if known is False and not predictions:
            return
        at = (self._now() if self._now else datetime.now(timezone.utc)).replace(tzinfo=None)
        snapshot = (state.call_id, state.caller or "", list(state.scenes), _resolved(state),
                    at.isoformat(timespec="seconds"))
        try:
            task = asyncio.get_running_loop().create_task(
                asyncio.to_thread(self._record_call, *snapshot, predictions))
        except RuntimeError:  # no loop (a synchronous caller): write now
            self._record_call(*snapshot, predictions)
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the call records `finish()` started."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _record_call(self, call_id: str, caller: str, scenes: list[str], resolved: bool, at: str,
                     predictions: list[dict]) -> None:
        phone = normalise_phone(caller)
        row = self._reader().execute("SELECT id FROM customers WHERE phone IN (?, ?, ?)",
                                     _phone_forms(phone)).fetchone() if phone else None
        cid = row[0] if row else None
        if cid is None and not predictions:  # an unknown caller with no question: nothing to learn
            return

        def write(conn) -> None:
            if cid is not None:
                reasons = [s for s in dict.fromkeys(scenes) if s not in NAVIGATION and not s.endswith("_menu")]
                conn.executemany(
                    "INSERT OR IGNORE INTO contacts(customer_id, call_key, at, scene, resolved, source)"
                    " VALUES (?, ?, ?, ?, ?, 'call')",
                    [(cid, call_id, at, scene, int(resolved)) for scene in reasons])
            conn.executemany(
                "INSERT INTO predictions(call_id, customer_id, at, name, scene, score, parts, accepted, correct)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(call_id, cid, at, p["name"], p["scene"], p["score"], json.dumps(p["parts"]),
                  None if p["accepted"] is None else int(p["accepted"]),
                  int(bool(p["accepted"]) or p["scene"] in scenes)) for p in predictions])

        try:
            self._write(write)
        except Exception:
            _LOGGER.exception("history: call %s not recorded", call_id)


def _resolved(state: CallState) -> bool:
    # a caller who hangs up after hearing their answer was served; one handed to a human was not
    return state.outcome not in ("transferred", "error") and not state.escalation


def _phone_forms(phone: str) -> list[str]:
    """A caller ID may arrive with or without its +: both match the customer."""
    bare = phone.lstrip("+")
    return [phone, bare, "+" + bare]


def _rows(conn, sql: str, *params) -> list[dict[str, Any]]:
    cur = conn.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [{k: v for k, v in zip(names, row) if v is not None} for row in cur]


class HistoryVerifier:
    """Checks a second factor against the salted hash in the store; the hash never leaves it."""

    def __init__(self, history: HistoryStore) -> None:
        self._history = history

    async def check(self, profile: dict[str, Any], method: str, answer: str) -> bool:
        customer_id = (profile or {}).get("_id")
        if customer_id is None:
            return False
        stored = await asyncio.to_thread(self._history.factor_hash, customer_id, method)
        return await asyncio.to_thread(verify_factor, method, stored, answer)
