"""The call store: migrations, recording simulated calls (every event, in order, the outcome),
masking, concurrency (one writer thread, readers on their own connections), draining on close,
and `ivr calls` / `ivr simulate --db`."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from ivr import events as ev
from ivr.app import build_services
from ivr.flow.state import CallState
from ivr.nlu.router import IntentRouter
from ivr.privacy import mask_phone
from ivr.sim import parse_script, simulate
from ivr.store import CallStore, connect, migrate, read_recent
from ivr.store.migrations import MIGRATIONS

ALL = [m[0] for m in MIGRATIONS]

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "flows" / "tests"
RESOLVED = SCRIPTS / "claim_status" / "en_keypad.yaml"  # +15550100002, ends resolved, ivr hangs up
TRANSFERRED = SCRIPTS / "agent" / "en_keypad.yaml"  # +15550100005, transferred to agents
ZH_CARD = SCRIPTS / "card_lost" / "zh_keypad.yaml"  # +8613800000001, freezes card 4321


@pytest.fixture(scope="module")
def router():
    return IntentRouter(None)  # keywords only: no model


async def sim(config, flows, router, path: Path, store=None):
    script = parse_script(str(path))
    now = (lambda: datetime.fromisoformat(script.at)) if script.at else None
    services = build_services(config, router=router, flags=script.flags, now=now)
    result = await simulate(flows, services, script, recorder=store)
    assert result.ok, result.failures  # the demo scripts themselves must pass
    return result


def rows(path: Path, sql: str, params=()) -> list[tuple]:
    conn = sqlite3.connect(str(path))
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


# -- connection and migrations -------------------------------------------------------------

def test_connect_sets_wal_synchronous_busy_timeout_and_foreign_keys(tmp_path):
    db = connect(tmp_path / "sub" / "x.db", busy_timeout=3.5)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 3500
        assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    finally:
        db.close()


def test_connect_without_create_refuses_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        connect(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


def test_migrations_are_idempotent_and_keep_the_salt(tmp_path):
    path = tmp_path / "m.db"
    db = connect(path)
    try:
        assert migrate(db) == ALL
        salt = db.execute("SELECT value FROM settings WHERE key = 'caller_salt'").fetchone()[0]
        assert migrate(db) == []
        assert migrate(db) == []
        assert [v for (v,) in db.execute("SELECT version FROM schema_migrations")] == ALL
        assert {"calls", "events", "settings", "schema_migrations"} <= set(db.table_names())
        assert db.execute("SELECT value FROM settings WHERE key = 'caller_salt'").fetchone()[0] == salt
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"idx_calls_started_at", "idx_calls_caller_hash"} <= indexes
    finally:
        db.close()
    CallStore(path).close()  # a store on an existing database migrates nothing
    assert rows(path, "SELECT count(*) FROM schema_migrations") == [(len(ALL),)]


def test_a_new_migration_runs_once_in_order_and_a_failing_one_rolls_back(tmp_path):
    db = connect(tmp_path / "m.db")
    try:
        migrate(db)
        extra = MIGRATIONS + [(100, "notes", lambda d: d.execute("CREATE TABLE notes (x TEXT)"))]
        assert migrate(db, extra) == [100]
        assert migrate(db, extra) == []

        def broken(d):
            d.execute("CREATE TABLE half (x TEXT)")
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            migrate(db, extra + [(101, "broken", broken)])
        assert "half" not in db.table_names()  # the failed migration left nothing behind
        assert [r[0] for r in db.execute("SELECT version FROM schema_migrations ORDER BY 1")] == ALL + [100]
    finally:
        db.close()


def test_concurrent_migrations_from_two_connections_apply_once(tmp_path):
    path = tmp_path / "m.db"
    errors: list[BaseException] = []

    def worker():
        try:
            d = connect(path)
            try:
                migrate(d)
            finally:
                d.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert [v for (v,) in rows(path, "SELECT version FROM schema_migrations ORDER BY 1")] == ALL


# -- recording calls -----------------------------------------------------------------------

async def test_a_simulated_call_is_recorded_with_every_event_in_order(tmp_path, config, flows, router):
    store = CallStore(tmp_path / "ivr.db", channel="sim")
    try:
        result = await sim(config, flows, router, RESOLVED, store)
        assert store.flush(10)
        [call] = store.recent(5)
    finally:
        store.close()
    assert call["call_id"] == result.state.call_id
    assert call["events"] == [e.to_dict() for e in result.events]  # all of them, in order
    assert [ev.Event.from_dict(e).to_dict() for e in call["events"]] == call["events"]  # round trip
    assert call["event_count"] == len(result.events) > 10
    assert call["outcome"] == "resolved" == result.state.outcome
    assert call["ended_by"] == "ivr"
    assert call["ended_at"] and call["started_at"] <= call["ended_at"]
    assert call["scenes"] == result.state.scenes == ["welcome", "main_menu", "claims_menu",
                                                     "claim_status", "anything_else"]
    assert call["last_scene"] == "anything_else"
    assert call["flow_version"] == flows.version
    assert call["lang"] == "en"
    assert call["channel"] == "sim"
    assert call["duration"] == pytest.approx(result.events[-1].t)
    seqs = rows(tmp_path / "ivr.db", "SELECT seq FROM events WHERE call_id = ? ORDER BY seq",
                (call["call_id"],))
    assert [s for (s,) in seqs] == list(range(1, len(result.events) + 1))


async def test_a_transferred_call_records_queue_and_outcome(tmp_path, config, flows, router):
    with CallStore(tmp_path / "ivr.db") as store:
        result = await sim(config, flows, router, TRANSFERRED, store)
    [call] = read_recent(tmp_path / "ivr.db", 1)
    assert result.state.outcome == "transferred"
    assert call["outcome"] == "transferred"
    assert call["transfer_queue"] == "agents"
    assert call["transfer_reason"] == "caller-request"
    assert call["ended_by"] == "transfer"


async def test_the_caller_is_masked_and_the_raw_number_is_nowhere_in_the_file(tmp_path, config, flows, router):
    path = tmp_path / "ivr.db"
    store = CallStore(path)
    raw = "+8613800000001"
    await sim(config, flows, router, ZH_CARD, store)
    store.close()
    assert rows(path, "SELECT caller FROM calls") == [(mask_phone(raw),)] == [("+86*******0001",)]
    [(caller_hash,)] = rows(path, "SELECT caller_hash FROM calls")
    assert len(caller_hash) == 64 and caller_hash == CallStore(path).caller_hash(raw)
    db = connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("ivr.db"))
    assert raw.encode() not in data and raw[1:].encode() not in data and b"13800000001" not in data


async def test_a_raw_caller_id_inside_an_event_is_masked_too(tmp_path):
    raw = "+15550100002"
    state = CallState(caller=raw, lang="en", flow_version="v1")
    stream = ev.EventStream()
    with CallStore(tmp_path / "ivr.db") as store:
        store.attach(stream, state)
        stream.publish(ev.CallStart(0.0, caller=raw, flow_version="v1", call_id=state.call_id))
        stream.publish(ev.Sms(1.0, to=raw, url="https://x/y"))
        store.finish(state.call_id, state)
    [call] = read_recent(tmp_path / "ivr.db", 1)
    text = json.dumps(call)
    assert raw not in text
    assert call["events"][1]["to"] == mask_phone(raw)


async def test_attaching_late_replays_history_and_a_resumed_call_continues_numbering(tmp_path):
    state = CallState(caller="", lang="en", flow_version="v1")
    stream = ev.EventStream()
    stream.publish(ev.CallStart(0.0, caller="", flow_version="v1", call_id=state.call_id))
    stream.publish(ev.Scene(0.5, id="welcome"))
    path = tmp_path / "ivr.db"
    with CallStore(path) as store:
        store.attach(stream, state)  # two events were published before
        stream.publish(ev.Hangup(2.0, by="caller"))
    with CallStore(path) as store:  # a controller restart: the call resumes on a new stream
        resumed = ev.EventStream()
        store.attach(resumed, state)
        resumed.publish(ev.Scene(3.0, id="main_menu"))
        state.outcome = "hangup-caller"
        store.finish(state.call_id, state)
        resumed.publish(ev.Scene(9.0, id="after_finish"))  # detached: not recorded
    [call] = read_recent(path, 5)
    assert [e["type"] for e in call["events"]] == ["call_start", "scene", "hangup", "scene"]
    assert rows(path, "SELECT seq FROM events ORDER BY seq") == [(1,), (2,), (3,), (4,)]
    assert call["outcome"] == "hangup-caller" and call["ended_by"] == "caller"
    assert call["caller"] == ""


async def test_fifty_concurrent_calls_are_all_recorded(tmp_path, config, flows, router, caplog):
    caplog.set_level(logging.WARNING, logger="ivr.store")
    path = tmp_path / "ivr.db"
    scripts = [RESOLVED, TRANSFERRED, ZH_CARD] * 17
    store = CallStore(path)
    results = await asyncio.gather(*(sim(config, flows, router, p, store) for p in scripts[:50]))
    assert store.close(30)
    assert store.dropped == 0
    assert not [r for r in caplog.records if "locked" in r.getMessage()]
    got = {c["call_id"]: c for c in read_recent(path, 100)}
    assert len(got) == 50
    for r in results:
        call = got[r.state.call_id]
        assert call["events"] == [e.to_dict() for e in r.events]
        assert call["outcome"] == r.state.outcome
    assert rows(path, "PRAGMA integrity_check") == [("ok",)]
    assert rows(path, "PRAGMA foreign_key_check") == []


async def test_two_stores_on_one_file_and_a_reader_never_see_database_is_locked(tmp_path, config, flows,
                                                                                 router, caplog):
    """Two processes' writers (here: two stores) and a busy reader on the same file."""
    caplog.set_level(logging.WARNING, logger="ivr.store")
    path = tmp_path / "ivr.db"
    a, b = CallStore(path), CallStore(path)
    stop = threading.Event()
    reads: list[int] = []
    errors: list[BaseException] = []

    def reader():
        while not stop.is_set():
            try:
                calls = read_recent(path, 100)
                reads.append(len(calls))
                for call in calls:  # a reader sees whole transactions: counts match events
                    assert call["event_count"] == len(call["events"]), call["call_id"]
            except BaseException as exc:
                errors.append(exc)
                return

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(5):  # five rounds: the reader keeps reading while both stores write
            await asyncio.gather(*(sim(config, flows, router, RESOLVED, s) for s in (a, b) for _ in range(5)))
            await asyncio.sleep(0.01)
        assert a.close(30) and b.close(30)
    finally:
        stop.set()
        thread.join()
    assert not errors, errors[0]
    assert len(reads) >= 2
    assert rows(path, "SELECT count(*) FROM calls") == [(50,)]
    assert not [r for r in caplog.records if "locked" in r.getMessage()]
    assert a.dropped == b.dropped == 0


async def test_close_waits_for_a_locked_database_and_drains_everything(tmp_path, config, flows, router,
                                                                      caplog):
    caplog.set_level(logging.WARNING, logger="ivr.store")
    path = tmp_path / "ivr.db"
    store = CallStore(path, busy_timeout=0.05)
    blocker = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        results = [await sim(config, flows, router, RESOLVED, store) for _ in range(5)]
        assert not store.flush(0.3)  # nothing can be committed yet
        assert rows(path, "SELECT count(*) FROM calls") == [(0,)]
        threading.Timer(0.5, lambda: blocker.execute("COMMIT")).start()
        assert store.close(30)  # returns only once everything is written
    finally:
        time.sleep(0.6)
        blocker.close()
    assert any("locked" in r.getMessage() for r in caplog.records)  # it did have to wait
    assert store.dropped == 0
    items = sum(len(r.events) + 2 for r in results)  # open + events + end per call
    assert store.written == items
    assert store.transactions <= 3  # what waited went in one batch, not one commit per event
    got = {c["call_id"]: c for c in read_recent(path, 10)}
    assert set(got) == {r.state.call_id for r in results}
    assert all(got[r.state.call_id]["events"] == [e.to_dict() for e in r.events] for r in results)


async def test_after_close_nothing_crashes_and_the_loss_is_counted(tmp_path):
    store = CallStore(tmp_path / "ivr.db")
    assert store.close() and store.close()  # idempotent
    state = CallState(caller="", lang="en", flow_version="v1")
    store.finish(state.call_id, state)
    assert store.dropped == 1
    assert store.flush(1)


async def test_aflush_runs_off_the_event_loop(tmp_path):
    store = CallStore(tmp_path / "ivr.db")
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    blocker = sqlite3.connect(str(tmp_path / "ivr.db"), isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    state = CallState(caller="", lang="en", flow_version="v1")
    store.attach(ev.EventStream(), state)
    threading.Timer(0.3, lambda: blocker.execute("COMMIT")).start()
    assert await store.aflush(10)
    task.cancel()
    blocker.close()
    await store.aclose()
    assert ticks > 10  # the loop kept running while the flush waited
    assert len(read_recent(tmp_path / "ivr.db", 5)) == 1


# -- the command line ----------------------------------------------------------------------

def _ivr(*args, env=None):
    return subprocess.run([sys.executable, "-m", "ivr", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


async def test_ivr_calls_last_2_json(tmp_path, config, flows, router):
    path = tmp_path / "ivr.db"
    with CallStore(path) as store:
        ids = []
        for p in (RESOLVED, TRANSFERRED, ZH_CARD):
            ids.append((await sim(config, flows, router, p, store)).state.call_id)
            time.sleep(0.002)  # distinct started_at
    proc = _ivr("calls", "--last", "2", "--json", "--db", str(path))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2  # one JSON object per line
    calls = [json.loads(line) for line in lines]
    assert [c["call_id"] for c in calls] == [ids[2], ids[1]]  # newest first
    assert calls[0]["caller"] == "+86*******0001" and calls[1]["outcome"] == "transferred"
    assert calls[0]["events"][0]["type"] == "call_start" and calls[0]["events"][-1]["type"] == "hangup"
    assert "caller_hash" not in calls[0]

    human = _ivr("calls", "--last", "1", "--db", str(path))
    assert human.returncode == 0, human.stderr
    head, *events = human.stdout.splitlines()
    assert ids[2] in head and "resolved" in head
    assert events and all(line.startswith("  ") for line in events)
    assert any("冻结" in line for line in events)


def test_ivr_calls_without_a_store_is_a_one_line_error(tmp_path):
    proc = _ivr("calls", "--db", str(tmp_path / "none.db"))
    assert proc.returncode == 2
    assert proc.stderr.startswith("ivr: store-missing:") and "Traceback" not in proc.stderr
    assert not (tmp_path / "none.db").exists()


def test_ivr_simulate_db_records_and_plain_simulate_does_not(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"flows: {{dir: {ROOT / 'flows'}}}\nrouter: {{backend: keywords}}\n"
                   f"paths: {{var_dir: {tmp_path / 'var'}, dialplans: {ROOT / 'dialplans'}}}\n")
    env = {"IVR_CONFIG": str(cfg), "IVR_VAR_DIR": ""}
    plain = _ivr("simulate", str(RESOLVED), env=env)
    assert plain.returncode == 0, plain.stderr
    assert not (tmp_path / "var" / "ivr.db").exists()  # no store unless --db
    db = tmp_path / "sim.db"
    proc = _ivr("simulate", "--db", str(db), str(RESOLVED), str(TRANSFERRED), env=env)
    assert proc.returncode == 0, proc.stderr
    out = _ivr("calls", "--json", "--db", str(db), env=env)
    calls = [json.loads(line) for line in out.stdout.splitlines()]
    assert [c["outcome"] for c in calls] == ["transferred", "resolved"]
    assert all(c["channel"] == "sim" for c in calls)
    # the default --db is VAR_DIR/ivr.db
    (tmp_path / "var").mkdir(exist_ok=True)
    proc = _ivr("simulate", "--db", str(tmp_path / "var" / "ivr.db"), str(RESOLVED), env=env)
    assert proc.returncode == 0, proc.stderr
    default = _ivr("calls", "--json", env=env)
    assert default.returncode == 0, default.stderr
    assert len(default.stdout.splitlines()) == 1


def test_call_ids_are_unique_hex_and_grow_with_time_so_the_store_appends_to_its_indexes():
    from ivr.flow.state import new_call_id

    first = new_call_id()
    time.sleep(0.002)
    later = [new_call_id() for _ in range(1000)]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in [first, *later])
    assert len(set(later)) == 1000
    assert all(first < i for i in later), "a later call's id sorts after an earlier one's"
    assert CallState(caller="", lang="en", flow_version="v").call_id[:12] >= first[:12]
