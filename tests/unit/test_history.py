"""The caller history: import, profiles, factors, contacts and predictions, purge and forget."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from ivr.data.population import population
from ivr.flow.proactive_score import PastCall, past_calls, score
from ivr.store.factors import hash_factor, verify_factor
from ivr.store.history import HistoryStore, HistoryVerifier
from ivr.store.history_import import import_file, import_records
from ivr.store.retention import forget, purge

REPO = Path(__file__).resolve().parents[2]
LI_WEI = {"phone": "+8613800000001", "name": "Li Wei", "lang": "zh", "birth_date": "1985-04-12",
          "id_last4": "1234",
          "policies": [{"number": "P100001", "product": "car", "status": "active", "renewal_due": "2027-01-05"}],
          "claims": [{"number": "20261101", "policy": "P100001", "status": "under_review", "opened": "2026-11-20"}],
          "cards": [{"last4": "4321", "status": "active", "statement_due": "2026-12-15", "balance": 1234.5,
                     "min_payment": 100}],
          "calls": [{"at": "2026-11-21T10:00:00", "scene": "claim_status", "resolved": False}]}


def write_lines(path: Path, lines: list) -> Path:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x, ensure_ascii=False) for x in lines) + "\n",
                    encoding="utf-8")
    return path


def table_counts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("customers", "policies", "claims", "cards", "contacts")}
    finally:
        conn.close()


# -- import ---------------------------------------------------------------------------------

def test_import_loads_good_rows_reports_bad_ones_by_line(tmp_path):
    bad = [
        "{not json",
        json.dumps({"name": "no phone"}),
        json.dumps({**LI_WEI, "phone": "+15550111111", "birth_date": "1985-13-40"}),
        json.dumps({**LI_WEI, "phone": "+15550111112", "policies": [{"number": "P9", "product": "boat",
                                                                      "status": "active"}]}),
        json.dumps({**LI_WEI, "phone": "+15550111113", "cards": [{"last4": 12, "status": "active",
                                                                   "balance": "lots"}]}),
        json.dumps([1, 2]),
        json.dumps({**LI_WEI, "phone": "+15550111114", "calls": [{"at": "yesterday", "scene": "x"}]}),
    ]
    good = {**LI_WEI, "policies": LI_WEI["policies"], "extra_field": 1}
    path = write_lines(tmp_path / "in.jsonl", [good, *bad, good])
    report = import_file(path, tmp_path / "ivr.db")
    assert (report.loaded, report.unchanged, report.rejected) == (1, 0, 8)
    lines = {int(p.split(":")[1]) for p in report.problems if "import-warning" not in p}
    assert lines == {2, 3, 4, 5, 6, 7, 8, 9}
    text = "\n".join(report.problems)
    assert "in.jsonl:4: import-bad-row: birth_date: '1985-13-40' is not a date" in text
    assert "policies[0].product: 'boat' is not one of" in text
    assert "cards[0].balance: expected a number" in text and "cards[0].last4: expected text" not in text
    assert "in.jsonl:9: import-duplicate" in text
    assert "in.jsonl:1: import-warning: extra_field: unknown field, ignored" in text
    assert table_counts(tmp_path / "ivr.db")["customers"] == 1


def test_reimport_changes_nothing_and_a_changed_row_replaces_its_holdings(tmp_path):
    db = tmp_path / "ivr.db"
    path = write_lines(tmp_path / "in.jsonl", [LI_WEI])
    assert import_file(path, db).loaded == 1
    conn = sqlite3.connect(db)
    before = conn.execute("SELECT * FROM customers").fetchall()
    again = import_file(path, db)
    assert (again.loaded, again.unchanged) == (0, 1)
    assert conn.execute("SELECT * FROM customers").fetchall() == before  # not even updated_at
    changed = {**LI_WEI, "claims": [{**LI_WEI["claims"][0], "status": "approved"}]}
    assert import_file(write_lines(tmp_path / "b.jsonl", [changed]), db).loaded == 1
    assert conn.execute("SELECT status FROM claims").fetchall() == [("approved",)]
    row = conn.execute("SELECT dob_hash, id4_hash FROM customers").fetchone()
    assert row == before[0][8:10]  # same factors: the hashes on file are kept
    conn.close()


def test_a_conflicting_customer_is_rolled_back_alone(tmp_path):
    db = tmp_path / "ivr.db"
    import_file(write_lines(tmp_path / "a.jsonl", [LI_WEI]), db)
    thief = {"phone": "+15550199999", "policies": [{"number": "P100001", "product": "car", "status": "active"}]}
    other = {"phone": "+15550199998", "name": "Fine"}
    report = import_file(write_lines(tmp_path / "b.jsonl", [thief, other]), db)
    assert report.rejected == 1 and report.loaded == 1
    assert "b.jsonl:1: import-conflict" in report.problems[0]
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT c.phone FROM policies p JOIN customers c ON c.id = p.customer_id").fetchall() \
        == [("+8613800000001",)]
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_factors_are_never_stored_in_plain_text(tmp_path):
    db = tmp_path / "ivr.db"
    import_file(write_lines(tmp_path / "a.jsonl", [LI_WEI]), db)
    raw = db.read_bytes() + (db.with_name("ivr.db-wal").read_bytes() if db.with_name("ivr.db-wal").exists() else b"")
    assert b"1985-04-12" not in raw and b"19850412" not in raw
    stored = hash_factor("dob", "1985-04-12")
    assert verify_factor("dob", stored, "19850412") and not verify_factor("dob", stored, "19850413")
    assert not verify_factor("dob", "", "19850412") and not verify_factor("dob", "garbage", "1")


# -- profiles and verification ---------------------------------------------------------------------

async def test_profile_by_caller_id_with_derived_facts_and_hashed_verification(tmp_path):
    db = tmp_path / "ivr.db"
    import_file(write_lines(tmp_path / "a.jsonl", [LI_WEI]), db)
    history = HistoryStore(db, today=lambda: date(2026, 12, 4))
    profile = await history.profile("8613800000001")  # the + may be missing on the wire
    assert profile["name"] == "Li Wei" and profile["lang"] == "zh"
    assert profile["open_claim"]["number"] == "20261101" and profile["bill_due"]["last4"] == "4321"
    assert "birth_date" not in profile and "id_last4" not in profile
    assert await history.profile("+15550000000") is None and await history.profile("'; DROP TABLE x") is None
    verifier = HistoryVerifier(history)
    assert await verifier.check(profile, "dob", "19850412")
    assert not await verifier.check(profile, "dob", "19850411")
    assert await verifier.check(profile, "id_last4", "1234")
    assert not await verifier.check({"name": "no id"}, "dob", "19850412")
    await history.update("cards", "4321", {"status": "blocked", "balance": 0})  # balance is not updatable
    card = (await history.profile("+8613800000001"))["cards"][0]
    assert card["status"] == "blocked" and card["blocked_at"] == "2026-12-04" and card["balance"] == 1234.5
    history.close()


async def test_a_call_from_an_unknown_number_without_questions_costs_no_write(tmp_path):
    """finish(known=False): the profile look-up found nobody and no question was asked, so
    nothing is looked up or written again; a known caller's call becomes a contact."""
    from ivr import events as ev
    from ivr.flow.state import CallState

    db = tmp_path / "ivr.db"
    import_file(write_lines(tmp_path / "a.jsonl", [LI_WEI]), db)
    history = HistoryStore(db, today=lambda: date(2026, 12, 4))
    for call_id, caller, known in (("u1", "+15550000000", False), ("k1", "+8613800000001", True)):
        state = CallState(call_id=call_id, caller=caller, lang="en", flow_version="v")
        history.attach(ev.EventStream(), state)
        state.scenes, state.outcome = ["welcome", "claim_status"], "resolved"
        history.finish(call_id, state, known=known)
        assert len(history._tasks) == (0 if not known else 1)
    await history.drain()
    contacts = sqlite3.connect(db).execute("SELECT call_key, scene FROM contacts WHERE source = 'call'").fetchall()
    assert contacts == [("k1", "claim_status")]
    history.close()


def test_demo_population_is_realistic_and_loads(tmp_path):
    records = list(population(1000, seed=3, today=date(2026, 12, 4)))
    assert len(records) == len({r["phone"] for r in records}) == 1000
    report = import_records(records, tmp_path / "ivr.db")
    assert report.rejected == 0 and report.loaded == 1000
    counts = table_counts(tmp_path / "ivr.db")
    assert counts["claims"] > 150 and counts["cards"] > 500 and counts["contacts"] > 800
    history = HistoryStore(tmp_path / "ivr.db", today=lambda: date(2026, 12, 4))
    profiles = [history.profile_now(r["phone"]) for r in records[5:400]]
    assert sum(bool(p["open_claim"]) for p in profiles) > 40
    assert sum(bool(p["bill_due"]) for p in profiles) > 40
    assert {p["lang"] for p in profiles} == {"en", "zh"}


# -- the proactive score ------------------------------------------------------------------------

def test_score_prefers_recent_history_and_learns_from_outcomes():
    no_history, parts = score(0.9, "claim_status", [])
    assert no_history == pytest.approx(0.9) and parts["own_calls"] == 0
    about_it = [PastCall(2, frozenset({"claim_status"}), False)]
    about_else = [PastCall(1, frozenset({"card_lost"}), True), PastCall(3, frozenset({"card_bill"}), True)]
    assert score(0.9, "claim_status", about_it)[0] > no_history > score(0.9, "claim_status", about_else)[0]
    old = [PastCall(400, frozenset({"card_lost"}), True)]
    assert score(0.9, "claim_status", old)[0] == pytest.approx(0.9)  # beyond the horizon
    assert score(0.7, "card_bill", [], (100, 20))[0] < 0.3  # wrong for most customers: demoted
    assert score(0.5, "card_bill", [], (100, 95))[0] > 0.85
    calls = past_calls({"calls": [{"call": "a", "at": "2026-12-01T10:00:00", "scene": "card_lost"},
                                  {"call": "a", "at": "2026-12-01T10:00:00", "scene": "card_bill"},
                                  {"at": "not a time", "scene": "x"}]}, datetime(2026, 12, 4, 10))
    assert calls == [PastCall(3.0, frozenset({"card_lost", "card_bill"}), True)]


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ivr", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_simulated_calls_learn_contacts_and_prediction_outcomes(tmp_path):
    db = tmp_path / "ivr.db"
    import_file(write_lines(tmp_path / "a.jsonl", [LI_WEI]), db)
    script = REPO / "flows/tests/welcome/zh_proactive_accepted.yaml"
    for _ in range(2):
        out = run_cli("simulate", "--db", str(db), "--json", str(script))
        assert out.returncode == 0, out.stderr
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT name, scene, accepted, correct FROM predictions").fetchall()
    assert rows == [("open_claim", "claim_status", 1, 1)] * 2
    assert conn.execute("SELECT COUNT(*) FROM contacts WHERE source = 'call' AND scene = 'claim_status'"
                        ).fetchone() == (2,)
    events = [json.loads(line) for line in out.stdout.splitlines()]
    proactive = [e for e in events if e["type"] == "proactive"][0]
    assert proactive["parts"]["own_hits"] > 0 and proactive["score"] > 0.9


def test_proactive_call_is_at_least_30_percent_shorter_than_the_menu(tmp_path):
    """The acceptance check: the same request, by the proactive question and from the menu."""
    db = tmp_path / "ivr.db"
    import_file(write_lines(tmp_path / "a.jsonl", [LI_WEI]), db)
    times = {}
    for name in ("proactive", "menu"):
        script = REPO / f"flows/tests/claim_status/zh_returning_{name}.yaml"
        out = run_cli("simulate", "--db", str(db), "--json", str(script))
        assert out.returncode == 0, out.stderr + out.stdout[-2000:]
        events = [json.loads(line) for line in out.stdout.splitlines()]
        assert [e["id"] for e in events if e["type"] == "scene"][-2] == "claim_status"
        times[name] = events[-1]["t"]
    assert times["proactive"] <= 0.7 * times["menu"], times


# -- privacy: purge and forget ---------------------------------------------------------------------

def test_purge_deletes_old_turns_only_and_forget_keeps_anonymous_aggregates(tmp_path):
    db = tmp_path / "ivr.db"
    import_file(write_lines(tmp_path / "a.jsonl", [LI_WEI]), db)
    script = REPO / "flows/tests/welcome/zh_proactive_accepted.yaml"
    assert run_cli("simulate", "--db", str(db), str(script)).returncode == 0
    conn = sqlite3.connect(db)
    turns = conn.execute("SELECT COUNT(*) FROM turns").fetchone()[0]
    assert turns > 3
    recordings = tmp_path / "rec"
    recordings.mkdir()
    (recordings / "old.wav").write_bytes(b"x")
    (recordings / "new.wav").write_bytes(b"x")
    os.utime(recordings / "old.wav", (0, 0))
    kept = purge(db, 30, [recordings])
    assert kept["turns_deleted"] == 0 and kept["recordings_deleted"] == 1
    assert sorted(p.name for p in recordings.iterdir()) == ["new.wav"]
    later = datetime.now(timezone.utc) + timedelta(days=31)
    gone = purge(db, 30, [], now=later)
    assert gone["turns_deleted"] >= turns  # the slots and intents go with the words
    assert conn.execute("SELECT COUNT(*) FROM turns").fetchone() == (0,)
    assert conn.execute("SELECT COUNT(*) FROM calls").fetchone() == (1,)
    result = forget(db, "+86 138 0000 0001")
    assert result["customers_deleted"] == 1 and result["calls_anonymised"] == 1
    assert table_counts(db) == {"customers": 0, "policies": 0, "claims": 0, "cards": 0, "contacts": 0}
    assert conn.execute("SELECT caller, caller_hash, outcome FROM calls").fetchall() == [("", "", "resolved")]
    assert conn.execute("SELECT customer_id, correct FROM predictions").fetchall() == [(None, 1)]
    dump = "\n".join(conn.iterdump())
    assert "0001" not in dump.replace("20261101", "") and "Li Wei" not in dump


def test_cli_history_commands_report_errors_without_tracebacks(tmp_path):
    out = run_cli("history", "import", str(tmp_path / "missing.jsonl"), "--db", str(tmp_path / "x.db"))
    assert out.returncode == 2 and "import-missing" in out.stderr and "Traceback" not in out.stderr
    bad = write_lines(tmp_path / "bad.jsonl", ["{", {"phone": "+15550100009", "lang": "fr"}])
    out = run_cli("history", "import", str(bad), "--db", str(tmp_path / "x.db"))
    assert out.returncode == 1 and "bad.jsonl:1: import-bad-json" in out.stdout
    assert "bad.jsonl:2: import-bad-row: lang: 'fr' is not one of en, zh" in out.stdout
    out = run_cli("history", "forget", "+15550100009", "--db", str(tmp_path / "none.db"))
    assert out.returncode == 2 and "store-missing" in out.stderr
    out = run_cli("history", "purge", "--days", "0", "--db", str(tmp_path / "x.db"))
    assert out.returncode == 2 and "usage" in out.stderr


# -- faults: concurrent writers and kill -9 ---------------------------------------------------------

async def test_concurrent_calls_and_an_import_never_lose_a_write(tmp_path):
    from ivr.store import CallStore

    db = tmp_path / "ivr.db"
    records = list(population(200, seed=5, today=date(2026, 12, 4)))
    import_records(records[:100], db)
    history = HistoryStore(db, busy_timeout=30)
    store = CallStore(db, busy_timeout=30)
    importer = subprocess.Popen([sys.executable, "-m", "ivr", "demo-data", "--customers", "300", "--seed", "5",
                                 "--db", str(db)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    from ivr.flow.state import CallState
    from ivr import events as ev

    async def one_call(i: int) -> None:
        state = CallState(call_id=f"c{i}", caller=records[i % 100]["phone"], lang="en", flow_version="v")
        stream = ev.EventStream()
        store.attach(stream, state)
        history.attach(stream, state)
        stream.publish(ev.Proactive(t=0.1, prediction="open_claim", accepted=True, scene="claim_status"))
        state.scenes = ["welcome", "claim_status"]
        state.outcome = "resolved"
        await asyncio.sleep(0)
        store.finish(state.call_id, state)
        history.finish(state.call_id, state)
        await history.update("cards", "0000", {"status": "active"})

    await asyncio.gather(*(one_call(i) for i in range(120)))
    await history.drain()
    assert await store.aflush(60)
    assert importer.wait(120) == 0, importer.stderr.read()
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM calls").fetchone() == (120,)
    assert conn.execute("SELECT COUNT(*) FROM predictions").fetchone() == (120,)
    assert conn.execute("SELECT COUNT(*) FROM customers").fetchone() == (300,)
    assert store.dropped == 0
    store.close()
    history.close()


CRASH_WRITER = r"""
import asyncio, sys
from ivr.store import CallStore
from ivr.flow.state import CallState
from ivr import events as ev

async def main(path):
    store = CallStore(path)
    i = 0
    while True:
        ids = []
        for _ in range(20):
            i += 1
            state = CallState(call_id=f"call{i}", caller="+15550100005", lang="en", flow_version="v")
            stream = ev.EventStream()
            store.attach(stream, state)
            for n in range(10):
                stream.publish(ev.Prompt(t=n, text="x" * 200, lang="en"))
            state.outcome = "resolved"
            store.finish(state.call_id, state)
            ids.append(state.call_id)
        await store.aflush()
        print("ack", " ".join(ids), flush=True)

asyncio.run(main(sys.argv[1]))
"""


def test_kill_9_under_load_keeps_every_acknowledged_call(tmp_path):
    db = tmp_path / "ivr.db"
    proc = subprocess.Popen([sys.executable, "-c", CRASH_WRITER, str(db)], cwd=REPO, stdout=subprocess.PIPE,
                            text=True)
    acked: list[str] = []
    try:
        for line in proc.stdout:
            acked += line.split()[1:]
            if len(acked) >= 400:
                break
    finally:
        proc.kill()  # SIGKILL, mid-write: the writer is always busy here
        proc.wait(10)
    assert len(acked) >= 400
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    stored = {r[0] for r in conn.execute("SELECT id FROM calls WHERE outcome = 'resolved'")}
    assert set(acked) <= stored
    counts = dict(conn.execute("SELECT call_id, COUNT(*) FROM events GROUP BY call_id").fetchall())
    assert all(counts.get(call_id) == 10 for call_id in acked)  # every event of every acked call
