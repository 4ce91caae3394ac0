"""Every call, recorded: the calls row and the call's events, in order.

One `CallStore` per process owns ONE writer thread with its own connection. Subscribers on a
call's EventStream only put small tuples on a queue (they never touch SQLite); the writer takes
everything that is waiting, writes it in one `BEGIN IMMEDIATE` transaction and commits. Readers
(`recent`, `read_recent`, the pages) open their own connections: in WAL mode they never block the
writer and the writer never blocks them.

Durability: an item is on disk once `flush()` (or `aflush()`) returns after it was queued, and
it then survives `kill -9` (WAL, synchronous=NORMAL). Items still in the queue when the process
is killed are lost (the writer commits every GROUP_WINDOW, 0.1 s, when it keeps up), so a caller
that must acknowledge a call awaits `aflush()` first.

The calls table holds the caller MASKED (`ivr.privacy.mask_phone`) and a salted sha256
(`caller_hash`) for "this caller's earlier calls"; the raw caller ID is never written, and is
masked in event data should it appear there.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import json
import logging
import queue
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ivr import events as ev
from ivr.flow.state import CallState
from ivr.privacy import mask_phone
from ivr.store.db import DEFAULT_BUSY_TIMEOUT, connect
from ivr.store.migrations import migrate

_LOGGER = logging.getLogger(__name__)

MAX_BATCH = 2000  # queue items per transaction
# group commit: after the first item, the writer gathers what else comes within this window
# and commits it all at once; a transaction per event would cost most of the store's CPU
GROUP_WINDOW = 0.1
# errors worth waiting out (another process holds the lock, the disk is full for a while):
# the batch is retried, with back-off, until it is written
_TRANSIENT = ("locked", "busy", "full", "disk i/o")
_RETRY_MAX_DELAY = 2.0

# the columns `recent()` returns for a call, in order (caller_hash stays in the database)
CALL_FIELDS = ("call_id", "caller", "started_at", "ended_at", "duration", "outcome", "ended_by",
               "transfer_queue", "transfer_reason", "escalation", "verified", "lang",
               "flow_version", "channel", "last_scene", "scenes", "event_count")


_INSERT_EVENT = "INSERT INTO events(call_id, seq, t, type, data) VALUES (?, ?, ?, ?, ?)"
_EFFECTS = {ev.EventType.CALL_START, ev.EventType.SCENE, ev.EventType.TRANSFER, ev.EventType.HANGUP}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class CallStore:
    """The call store of one process. Thread-safe; `attach`/`finish` never block on SQLite."""

    def __init__(self, path: str | Path, *, channel: str = "",
                 busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> None:
        self.path = Path(path)
        self.channel = channel
        self._busy_timeout = busy_timeout
        db = connect(self.path, busy_timeout=busy_timeout)  # blocking: construct at start-up
        try:
            migrate(db)
            row = db.execute("SELECT value FROM settings WHERE key = 'caller_salt'").fetchone()
            self._salt = row[0]
        finally:
            db.close()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._attached: dict[str, Callable[[], None]] = {}
        self._seq: dict[str, int] = {}  # writer thread only: next event number per call
        self.written = 0  # queue items committed (writer thread; read for stats/tests)
        self.transactions = 0  # transactions committed
        self.dropped = 0  # items that could not be written at all (logged with their error)
        self._writer = threading.Thread(target=self._run, name=f"callstore:{self.path.name}",
                                        daemon=True)
        self._writer.start()
        atexit.register(self.close)  # daemon thread: drain on a normal interpreter exit

    # ---- the call side (event loop): enqueue only --------------------------------------

    def caller_hash(self, caller: str) -> str:
        """sha256 of this install's salt and the caller ID; '' for no caller."""
        if not caller:
            return ""
        return hashlib.sha256(f"{self._salt}:{caller}".encode()).hexdigest()

    def attach(self, stream: ev.EventStream, state: CallState, *, channel: str | None = None) -> None:
        """Record the call `state.call_id`: its row now, then every event `stream` publishes.

        Events already in `stream.history` are recorded first (attaching late loses nothing).
        A resumed call (same call_id) keeps its row and continues its event numbering.
        """
        call_id = state.call_id
        raw = state.caller or ""
        masked = mask_phone(raw)
        self._put(("open", call_id, {
            "id": call_id, "caller": masked, "caller_hash": self.caller_hash(raw),
            "lang": state.lang, "flow_version": state.flow_version,
            "channel": self.channel if channel is None else channel, "started_at": _now()}))

        def on_event(event: ev.Event) -> None:
            data = event.to_dict()
            text = json.dumps(data, ensure_ascii=False, default=str)
            if len(raw) >= 5 and raw in text:  # the engine masks; this is the safety net
                text = text.replace(raw, masked)
                data = json.loads(text)
            # the wall-clock time only matters for events that change the calls row
            self._put(("event", call_id, data, text, _now() if event.type in _EFFECTS else ""))

        with self._lock:
            old = self._attached.pop(call_id, None)
        if old:
            old()
        for event in list(stream.history):
            on_event(event)
        unsubscribe = stream.subscribe(on_event)
        with self._lock:
            self._attached[call_id] = unsubscribe

    def finish(self, call_id: str, state: CallState) -> None:
        """The call is over: record its final state and stop listening to its stream."""
        with self._lock:
            unsubscribe = self._attached.pop(call_id, None)
        if unsubscribe:
            unsubscribe()
        self._put(("end", call_id, {
            "outcome": state.outcome, "ended_at": _now(), "scenes": json.dumps(state.scenes),
            "last_scene": state.scene, "verified": int(bool(state.verified)),
            "transfer_reason": state.transfer_reason, "escalation": state.escalation,
            "flow_version": state.flow_version, "lang": state.lang}))

    def _put(self, item: tuple) -> None:
        if self._closed:
            _LOGGER.error("call store %s is closed: %s for call %s not recorded", self.path,
                          item[0], item[1])
            self.dropped += 1
            return
        self._queue.put(item)

    # ---- draining ------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Items waiting for the writer (approximate)."""
        return self._queue.qsize()

    def flush(self, timeout: float | None = None) -> bool:
        """Block until everything queued before this call is committed. False on timeout."""
        if not self._writer.is_alive():
            return self._queue.empty()
        done = threading.Event()
        self._queue.put(("flush", done))
        return done.wait(timeout)

    async def aflush(self, timeout: float | None = None) -> bool:
        """`flush()` off the event loop."""
        return await asyncio.to_thread(self.flush, timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Detach from every stream, write everything queued, stop the writer. Idempotent."""
        with self._lock:
            already, self._closed = self._closed, True
            attached, self._attached = list(self._attached.values()), {}
        for unsubscribe in attached:
            unsubscribe()
        if not already:
            self._queue.put(("stop", None))
            atexit.unregister(self.close)
        self._writer.join(timeout)
        return not self._writer.is_alive()

    async def aclose(self, timeout: float | None = None) -> bool:
        return await asyncio.to_thread(self.close, timeout)

    def __enter__(self) -> "CallStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- reading (own connection) ------------------------------------------------------

    def recent(self, last: int = 10) -> list[dict[str, Any]]:
        """The last `last` calls, newest first, each with its events (committed data only:
        `flush()` first to see this process's queued writes)."""
        return read_recent(self.path, last, busy_timeout=self._busy_timeout)

    # ---- the writer thread -------------------------------------------------------------

    def _run(self) -> None:
        db = None
        while db is None:
            try:
                db = connect(self.path, busy_timeout=self._busy_timeout)
            except Exception:
                _LOGGER.exception("call store %s: cannot open; retrying", self.path)
                time.sleep(1.0)
        try:
            stop = False
            while not stop:
                batch = [self._queue.get()]
                if batch[0][0] not in ("flush", "stop"):
                    time.sleep(GROUP_WINDOW)  # one wake-up per window, not one per event
                while len(batch) < MAX_BATCH:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                writes = [item for item in batch if item[0] in ("open", "event", "end")]
                if writes:
                    self._commit(db, writes)
                for kind, value, *_ in batch:
                    if kind == "flush":
                        value.set()
                    elif kind == "stop":
                        stop = True
        finally:
            db.close()

    def _commit(self, db, writes: list[tuple]) -> None:
        delay = 0.05
        while True:
            seq = dict(self._seq)
            try:
                self._transaction(db, writes, seq)
            except sqlite3.OperationalError as exc:
                db.rollback()
                if not any(word in str(exc).lower() for word in _TRANSIENT):
                    self._write_singly(db, writes, exc)
                    return
                _LOGGER.warning("call store %s: %s; retrying %d items in %.2f s", self.path, exc,
                                len(writes), delay)
                time.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_DELAY)
                continue
            except Exception as exc:
                db.rollback()
                self._write_singly(db, writes, exc)
                return
            self._seq = seq
            self.written += len(writes)
            self.transactions += 1
            return

    def _write_singly(self, db, writes: list[tuple], exc: Exception) -> None:
        """A batch failed for a reason retrying will not fix: write its items one by one, so
        only the bad one is lost (and logged)."""
        if len(writes) == 1:
            _LOGGER.error("call store %s: cannot write %s for call %s: %s", self.path,
                          writes[0][0], writes[0][1], exc)
            self.dropped += 1
            return
        for item in writes:
            self._commit(db, [item])

    def _transaction(self, db, writes: list[tuple], seq: dict[str, int]) -> None:
        conn = db.conn  # the raw connection: sqlite-utils' execute() costs more per statement
        conn.execute("BEGIN IMMEDIATE")
        touched: dict[str, tuple[int, float]] = {}
        rows: list[tuple] = []  # events, inserted together
        for kind, call_id, payload, *rest in writes:
            if kind == "open":
                cur = conn.execute(
                    "INSERT INTO calls(id, caller, caller_hash, lang, flow_version, channel, started_at)"
                    " VALUES (:id, :caller, :caller_hash, :lang, :flow_version, :channel, :started_at)"
                    " ON CONFLICT(id) DO NOTHING", payload)
                if cur.rowcount == 1:  # a new call: its events start at 1, no need to look
                    seq[call_id] = 1
                continue
            if kind == "end":
                conn.executemany(_INSERT_EVENT, rows)
                rows = []
                conn.execute(
                    "UPDATE calls SET outcome = COALESCE(NULLIF(:outcome, ''), outcome),"
                    " ended_at = COALESCE(ended_at, :ended_at), scenes = :scenes,"
                    " last_scene = :last_scene, verified = :verified,"
                    " transfer_reason = COALESCE(NULLIF(:transfer_reason, ''), transfer_reason),"
                    " escalation = :escalation, flow_version = :flow_version,"
                    " lang = COALESCE(NULLIF(:lang, ''), lang) WHERE id = :id",
                    {**payload, "id": call_id})
                seq.pop(call_id, None)
                continue
            text, at = rest
            if not seq.get(call_id):
                conn.executemany(_INSERT_EVENT, rows)
                rows = []
                row = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE call_id = ?",
                                   [call_id]).fetchone()
                seq[call_id] = row[0] + 1
            n = seq[call_id]
            seq[call_id] = n + 1
            t = float(payload.get("t", 0.0))
            rows.append((call_id, n, t, payload["type"], text))
            count, t_max = touched.get(call_id, (0, 0.0))
            touched[call_id] = (count + 1, max(t_max, t))
            if payload["type"] in _EFFECTS:
                self._event_effects(conn, call_id, payload, at)
        conn.executemany(_INSERT_EVENT, rows)
        conn.executemany("UPDATE calls SET event_count = event_count + ?,"
                         " duration = MAX(COALESCE(duration, 0), ?) WHERE id = ?",
                         [(count, t_max, call_id) for call_id, (count, t_max) in touched.items()])
        conn.commit()

    @staticmethod
    def _event_effects(db, call_id: str, data: dict[str, Any], at: str) -> None:
        """What an event says about the call, before `finish()` gives the final word."""
        kind = data["type"]
        if kind == ev.EventType.CALL_START:
            db.execute("UPDATE calls SET lang = COALESCE(NULLIF(?, ''), lang),"
                       " flow_version = COALESCE(NULLIF(?, ''), flow_version) WHERE id = ?",
                       [data.get("lang", ""), data.get("flow_version", ""), call_id])
        elif kind == ev.EventType.SCENE:
            db.execute("UPDATE calls SET last_scene = ? WHERE id = ?", [data.get("id", ""), call_id])
        elif kind == ev.EventType.TRANSFER:
            db.execute("UPDATE calls SET outcome = 'transferred', ended_by = 'transfer',"
                       " transfer_queue = ?, transfer_reason = ?, ended_at = COALESCE(ended_at, ?)"
                       " WHERE id = ?",
                       [data.get("queue", ""), data.get("reason", ""), at, call_id])
        elif kind == ev.EventType.HANGUP:
            by = data.get("by", "")
            outcome = "hangup-caller" if by == "caller" else "resolved"
            db.execute("UPDATE calls SET ended_by = CASE WHEN ended_by = '' THEN ? ELSE ended_by END,"
                       " outcome = CASE WHEN outcome = '' THEN ? ELSE outcome END,"
                       " ended_at = COALESCE(ended_at, ?) WHERE id = ?", [by, outcome, at, call_id])


def read_recent(path: str | Path, last: int = 10, *,
                busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> list[dict[str, Any]]:
    """The last `last` calls in the store at `path`, newest first, each with `events` (the
    events' wire dicts, in order). Opens its own connection; never creates the file."""
    db = connect(path, busy_timeout=busy_timeout, create=False)
    try:
        if "calls" not in db.table_names():
            return []
        with db.atomic():  # one snapshot for calls and their events
            rows = list(db.query(
                "SELECT * FROM calls ORDER BY started_at DESC, rowid DESC LIMIT ?", [max(0, last)]))
            ids = [r["id"] for r in rows]
            events: dict[str, list[dict]] = {i: [] for i in ids}
            if ids:
                marks = ",".join("?" * len(ids))
                for e in db.query(f"SELECT call_id, data FROM events WHERE call_id IN ({marks})"
                                  " ORDER BY call_id, seq", ids):
                    events[e["call_id"]].append(json.loads(e["data"]))
    finally:
        db.close()
    calls = []
    for r in rows:
        call = {"call_id": r["id"], **{k: r[k] for k in CALL_FIELDS[1:] if k in r}}
        call["verified"] = bool(call.get("verified"))
        call["scenes"] = json.loads(call.get("scenes") or "[]")
        call["events"] = events[r["id"]]
        calls.append(call)
    return calls
