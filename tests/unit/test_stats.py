"""Analytics (`ivr.store.stats`, `ivr stats`): figures from simulated demo calls checked
against an independent recomputation from their events, a hand-made store with figures worked
out by hand, the `since` window and its time zone, hostile input, and speed on many calls."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time

import pytest

from ivr.cli import main
from ivr.nlu.router import IntentRouter
from ivr.store.stats import StatsError, compute, parse_since

from _statskit import handmade, oracle, fill


@pytest.fixture(scope="module")
def simulated(tmp_path_factory, config, flows):
    path = tmp_path_factory.mktemp("stats") / "sim.db"
    results = asyncio.run(fill(path, config, flows, IntentRouter(None)))
    return path, results


@pytest.fixture
def store(tmp_path):
    return handmade(tmp_path / "hand.db")


# ---- simulated calls against the oracle ---------------------------------------------------

def test_summary_of_simulated_calls_matches_their_events(simulated):
    path, results = simulated
    want = oracle(results)
    got = compute(path)
    assert got["calls"] == want["calls"] == len(results)
    assert got["ended"] == len(results) and got["in_progress"] == 0
    assert got["outcomes"] == want["outcomes"]
    assert got["abandoned"] == want["abandoned"]
    assert got["contained"] == want["contained"]
    assert got["containment"] == want["containment"]
    assert got["resolved_rate"] == want["resolved_rate"]
    assert got["average_handle_time"] == pytest.approx(want["average_handle_time"], abs=0.01)
    assert {r["reason"]: r["count"] for r in got["transfer_reasons"]} == dict(want["reasons"])
    assert {r["queue"]: r["count"] for r in got["transfer_queues"]} == dict(want["queues"])
    # the scripts were chosen to give something to count in every figure
    assert got["transferred"] and got["resolved"] and got["proactive"]["asked"] >= 5


def test_steps_of_simulated_calls_match_their_events(simulated):
    path, results = simulated
    want = oracle(results)
    steps = {(r["scene"], r["step"]): r for r in compute(path)["steps"]}
    for key, n in want["entered"].items():
        assert steps[key]["entered"] == n, key
    for key in set(want["no_input"]) | set(want["no_match"]):
        assert steps[key]["no_input"] == want["no_input"][key], key
        assert steps[key]["no_match"] == want["no_match"][key], key
    assert steps[("claim_status", "claim_no")]["no_match"] >= 3  # en_no_match's three misses
    assert steps[("address_change", "new_address")]["no_input"] == 3
    quiet = [r for k, r in steps.items() if k not in want["no_input"] and k not in want["no_match"]]
    assert all(r["no_input"] == r["no_match"] == 0 for r in quiet)
    row = steps[("claim_status", "claim_no")]
    assert row["no_match_rate"] == round(row["no_match"] / row["entered"], 4)


def test_funnels_of_simulated_calls_match_their_scenes(simulated):
    path, results = simulated
    want = oracle(results)["funnel"]
    got = {f["scene"]: f for f in compute(path)["funnels"]}
    assert set(got) == set(want)
    for scene_id, counts in want.items():
        for key in ("entered", "resolved", "transferred", "dropped", "escalated", "other"):
            assert got[scene_id][key] == counts[key], (scene_id, key)
    assert got["welcome"]["entered"] == len(results)
    assert got["claim_status"]["escalated"] >= 2  # no-match and no-input went to the agent


def test_proactive_of_simulated_calls_matches_their_events(simulated):
    path, results = simulated
    want = oracle(results)["proactive"]
    p = compute(path)["proactive"]
    for key in ("asked", "accepted", "declined", "unanswered", "right"):
        assert p[key] == want[("*", key)], key
    assert p["acceptance_rate"] == round(want[("*", "accepted")] / want[("*", "asked")], 4)
    assert p["precision"] == round(want[("*", "right")] / want[("*", "asked")], 4)
    # claim_status/en_keypad declined the claim question but went to claim_status anyway
    assert p["right"] > p["accepted"]
    for d in p["by_prediction"]:
        assert d["asked"] == want[(d["prediction"], "asked")]
        assert d["right"] == want[(d["prediction"], "right")]


# ---- a hand-made store, figures worked out by hand --------------------------------------

def test_handmade_summary(store):
    s = compute(store)
    assert (s["calls"], s["ended"], s["in_progress"]) == (6, 5, 1)
    assert s["outcomes"] == {"transferred": 2, "hangup-caller": 2, "resolved": 1}
    assert s["abandoned"] == 1  # c3: gone after 4 s
    assert s["contained"] == 2 and s["containment"] == 0.5  # c1, c4 of c1 c2 c4 c5
    assert s["resolved_rate"] == 0.25
    assert s["average_handle_time"] == 30.8  # (30 + 60 + 4 + 40 + 20) / 5
    assert s["handle_time_by_outcome"] == {"transferred": 40.0, "hangup-caller": 22.0, "resolved": 30.0}
    assert s["transfer_reasons"] == [{"reason": "injured", "count": 1, "share": 0.5},
                                     {"reason": "no-match", "count": 1, "share": 0.5}]
    assert [q["queue"] for q in s["transfer_queues"]] == ["agents", "claims"]


def test_abandon_threshold_is_a_parameter(store):
    assert compute(store, abandon_seconds=0)["containment"] == pytest.approx(0.6)  # 3 of 5
    assert compute(store, abandon_seconds=45)["abandoned"] == 2


def test_handmade_steps_attribute_errors_to_the_step_before_them(store):
    steps = {(r["scene"], r["step"]): r for r in compute(store)["steps"]}
    menu = steps[("main_menu", "choose")]
    assert (menu["entered"], menu["no_input"], menu["no_match"]) == (3, 1, 2)
    assert (menu["no_input_rate"], menu["no_match_rate"]) == (0.3333, 0.6667)
    verify = steps[("address_change", "verify")]  # after the scene event, before any step
    assert (verify["entered"], verify["no_input"], verify["no_input_rate"]) == (None, 1, None)
    assert steps[("welcome", "likely")]["entered"] == 5
    first = compute(store)["steps"][0]
    assert (first["scene"], first["step"]) == ("main_menu", "choose")  # most errors first


def test_handmade_funnels(store):
    f = {row["scene"]: row for row in compute(store)["funnels"]}
    assert f["welcome"] == {"scene": "welcome", "entered": 5, "resolved": 0, "transferred": 0,
                            "escalated": 0, "dropped": 1, "other": 0, "passed_on": 4}
    assert f["main_menu"]["entered"] == 3 and f["main_menu"]["escalated"] == 1
    assert f["main_menu"]["passed_on"] == 3
    assert f["agent"]["transferred"] == 1 and f["card_bill"]["resolved"] == 1
    assert f["claim_status"]["dropped"] == 1 and f["claim_report"]["transferred"] == 1


def test_handmade_proactive(store):
    p = compute(store)["proactive"]
    assert (p["asked"], p["accepted"], p["declined"], p["unanswered"]) == (4, 1, 2, 1)
    assert p["acceptance_rate"] == 0.25
    assert p["right"] == 2 and p["precision"] == 0.5  # c1 accepted; c4 reached claim_status
    by = {d["prediction"]: d for d in p["by_prediction"]}
    assert by["open_claim"]["asked"] == 2 and by["open_claim"]["precision"] == 0.5
    assert by["open_claim"]["acceptance_rate"] == 0.0
    assert by["renewal_due"]["right"] == 0  # no scene field: right only when accepted
    assert by["bill_due"]["precision"] == 1.0


def test_calls_per_day_and_hour_in_the_time_zone(store):
    utc = compute(store)
    assert utc["calls_per_day"] == [{"day": "2026-12-01", "calls": 2}, {"day": "2026-12-02", "calls": 2},
                                    {"day": "2026-12-03", "calls": 2}]
    local = compute(store, tz="Asia/Shanghai")
    assert local["calls_per_day"] == [{"day": "2026-12-01", "calls": 1},
                                      {"day": "2026-12-02", "calls": 3},
                                      {"day": "2026-12-03", "calls": 2}]
    hours = {h["hour"]: h["calls"] for h in local["calls_per_hour"] if h["calls"]}
    assert hours == {7: 1, 9: 1, 17: 2, 18: 1, 19: 1}


def test_since_limits_the_window_in_the_given_time_zone(store):
    assert compute(store, since="2026-12-02")["calls"] == 4  # UTC midnight
    assert compute(store, since="2026-12-02", tz="Asia/Shanghai")["calls"] == 5  # 16:00 UTC the day before
    assert compute(store, since="2026-12-02T00:00+00:00", tz="Asia/Shanghai")["calls"] == 4
    late = compute(store, since="2026-12-03T09:15:00Z")
    assert late["calls"] == 1 and late["ended"] == 0 and late["containment"] is None
    s = compute(store, since="2026-12-02")
    assert s["proactive"]["asked"] == 3 and s["steps"][0]["scene"] == "address_change"
    assert {f["scene"] for f in s["funnels"]} == {"welcome", "main_menu", "address_change",
                                                  "claim_status", "claim_report"}
    assert compute(store, since="2030-01-01")["calls"] == 0


# ---- hostile input --------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["yesterday", "2026-13-01", "2026-12-01T25:00", "'; DROP TABLE calls; --",
                                 "2026-12-01' OR '1'='1", "x" * 500, "\x00", "2026-12-01T00:00+99:00"])
def test_bad_since_is_refused_with_its_code(store, bad):
    with pytest.raises(StatsError) as caught:
        compute(store, since=bad)
    assert caught.value.code == "bad-since"
    assert sqlite3.connect(store).execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 6


def test_parse_since_forms():
    assert parse_since(None) is None and parse_since("  ") is None
    assert parse_since("2026-12-01") == "2026-12-01T00:00:00.000+00:00"
    assert parse_since("2026-12-01", "Asia/Shanghai") == "2026-11-30T16:00:00.000+00:00"
    assert parse_since("2026-12-01T08:00:00+08:00") == "2026-12-01T00:00:00.000+00:00"
    with pytest.raises(StatsError):
        parse_since("2026-12-01", "Mars/Olympus")


def test_no_store_is_not_created(tmp_path):
    with pytest.raises(FileNotFoundError):
        compute(tmp_path / "none.db")
    assert not (tmp_path / "none.db").exists()


def test_empty_and_unmigrated_stores_give_zeros(tmp_path):
    (tmp_path / "zero.db").write_bytes(b"")
    s = compute(tmp_path / "zero.db")
    assert s["calls"] == 0 and s["containment"] is None and s["steps"] == []
    assert s["proactive"]["precision"] is None and len(s["calls_per_hour"]) == 24
    from ivr.store import connect, migrate

    db = connect(tmp_path / "migrated.db")
    migrate(db)
    db.close()
    assert compute(tmp_path / "migrated.db") == {**s, "since": None}


def test_hostile_strings_in_the_store_are_plain_data(tmp_path):
    evil = "x'); DROP TABLE calls; --<script>"
    s = compute(handmade(tmp_path / "evil.db", evil=evil))
    assert {r["reason"] for r in s["transfer_reasons"]} == {evil, "no-match"}
    assert evil in {f["scene"] for f in s["funnels"]}
    assert compute(tmp_path / "evil.db")["calls"] == 6


# ---- the command ---------------------------------------------------------------------------

def test_cli_json_is_one_object_with_the_figures(store, capsys):
    assert main(["stats", "--db", str(store), "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    data = json.loads(out)
    assert data["calls"] == 6 and data["containment"] == 0.5
    assert data["timezone"] == "Asia/Shanghai"  # the hotline's calendar.timezone


def test_cli_text_summary(store, capsys):
    assert main(["stats", "--db", str(store), "--since", "2026-12-01T00:00Z"]) == 0
    out = capsys.readouterr().out
    assert "containment (not transferred to a human): 50.0%" in out
    assert "main_menu.choose" in out and "open_claim" in out and "precision 50.0%" in out


def test_cli_errors_are_one_line_with_a_code(tmp_path, store, capsys):
    assert main(["stats", "--db", str(tmp_path / "missing.db")]) == 2
    assert capsys.readouterr().err.strip() == f"ivr: store-missing: no call store at {tmp_path / 'missing.db'}"
    assert main(["stats", "--db", str(store), "--since", "'; DROP TABLE calls;--"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ivr: bad-since:") and "Traceback" not in err and err.count("\n") == 1


# ---- speed -------------------------------------------------------------------------------------

def test_many_calls_are_counted_quickly(tmp_path, simulated):
    """The simulated calls copied to 20,000 calls (about 1.3 million events)."""
    path = tmp_path / "many.db"
    src, results = simulated
    conn = sqlite3.connect(path)
    conn.execute("ATTACH DATABASE ? AS src", [str(src)])
    conn.executescript("""
        CREATE TABLE calls AS SELECT * FROM src.calls WHERE 0;
        CREATE TABLE events AS SELECT * FROM src.events WHERE 0;
        CREATE TABLE settings AS SELECT * FROM src.settings;""")
    copies = 20_000 // len(results) + 1
    conn.execute("WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
                 " INSERT INTO calls SELECT c.id || '-' || n.i, c.caller, c.caller_hash, c.lang,"
                 " c.flow_version, c.channel, c.started_at, c.ended_at, c.duration, c.outcome,"
                 " c.ended_by, c.transfer_queue, c.transfer_reason, c.escalation, c.verified,"
                 " c.last_scene, c.scenes, c.event_count FROM src.calls c, n", [copies - 1])
    conn.execute("WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
                 " INSERT INTO events SELECT e.call_id || '-' || n.i, e.seq, e.t, e.type, e.data"
                 " FROM src.events e, n", [copies - 1])
    conn.commit()
    conn.close()
    # the schema of migration 1 (indexes included), as the store has it
    from ivr.store import connect
    from ivr.store.migrations import MIGRATIONS

    db = connect(tmp_path / "schema.db")
    MIGRATIONS[0][2](db)
    ddl = [r[0] for r in db.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")]
    db.close()
    conn = sqlite3.connect(path)
    conn.execute("CREATE UNIQUE INDEX pk_events ON events(call_id, seq)")
    conn.execute("CREATE UNIQUE INDEX pk_calls ON calls(id)")
    for sql in ddl:
        conn.execute(sql)
    conn.commit()
    conn.close()
    started = time.perf_counter()
    s = compute(path)
    elapsed = time.perf_counter() - started
    assert s["calls"] == copies * len(results)
    assert s["proactive"]["asked"] == copies * compute(src)["proactive"]["asked"]
    assert elapsed < 10, f"{elapsed:.1f} s for {s['calls']} calls"


def test_the_step_index_gives_the_same_figures(store, tmp_path):
    from ivr.store.stats import STEP_INDEX

    conn = sqlite3.connect(store)
    conn.execute(f"DROP INDEX IF EXISTS {STEP_INDEX}")  # migration 4 made it: figures without it first
    conn.commit()
    before = compute(store)
    conn.execute(f"CREATE INDEX {STEP_INDEX} ON events(json_extract(data, '$.scene'),"
                 " json_extract(data, '$.id'), json_extract(data, '$.kind')) WHERE type = 'step'")
    conn.commit()
    plan = " ".join(str(r) for r in conn.execute(
        f"EXPLAIN QUERY PLAN SELECT COUNT(*) FROM events e INDEXED BY {STEP_INDEX} WHERE e.type = 'step'"))
    conn.close()
    assert STEP_INDEX in plan
    assert compute(store) == before
    assert compute(store, since="2026-12-02") == compute(handmade(tmp_path / "plain.db"), since="2026-12-02")
