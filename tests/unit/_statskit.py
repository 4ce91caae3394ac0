"""Stores for the analytics tests: simulated demo calls (with an independent oracle that
recomputes the figures from the calls' events in Python), and a small hand-made store whose
figures are worked out by hand in the tests."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path

from ivr import events as ev
from ivr.app import build_services
from ivr.sim import parse_script, simulate
from ivr.store import CallStore, connect, migrate

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = [ROOT / "flows" / "tests" / p for p in (
    "welcome/en_proactive_declined.yaml",    # bill_due declined, caller hangs up in the menu
    "welcome/zh_proactive_accepted.yaml",    # open_claim accepted -> claim_status
    "claim_status/en_keypad.yaml",           # open_claim declined, reaches claim_status anyway
    "card_bill/en_proactive.yaml",           # bill_due accepted
    "premium_payment/en_agent.yaml",         # bill_due declined, transferred
    "claim_status/en_no_match.yaml",         # no-match x3 at claim_no, escalated to the agent
    "claim_status/en_no_input.yaml",         # no-input x3, escalated
    "address_change/en_no_input.yaml",       # verified, then no-input at new_address
    "address_change/en_unverified.yaml",     # verification fails -> agent
    "agent/en_keypad.yaml",                  # transferred on request
    "welcome/en_closed.yaml",                # closed: short, the IVR hangs up
    "card_lost/en_keypad.yaml",              # resolved
)]


async def fill(path: Path, config, flows, router, scripts=SCRIPTS) -> list:
    """Simulate `scripts` into a call store at `path`; the SimResults, each a passing call."""
    results = []
    with CallStore(path, channel="sim") as store:
        for script_path in scripts:
            script = parse_script(str(script_path))
            now = (lambda at=script.at: datetime.fromisoformat(at)) if script.at else None
            services = build_services(config, router=router, flags=script.flags, now=now)
            result = await simulate(flows, services, script, recorder=store)
            assert result.ok, (script_path, result.failures)
            results.append(result)
        store.flush(30)
    return results


def oracle(results, abandon: float = 10.0) -> dict:
    """The figures, recomputed from the calls' events and final states (not from SQL)."""
    outcomes = Counter(r.state.outcome for r in results)
    duration = {id(r): max(e.t for e in r.events) for r in results}
    abandoned = sum(1 for r in results if r.state.outcome == "hangup-caller" and duration[id(r)] < abandon)
    served = len(results) - abandoned
    contained = served - outcomes["transferred"]
    entered, no_input, no_match = Counter(), Counter(), Counter()
    reasons, queues = Counter(), Counter()
    funnel = {}
    asked = Counter()
    for r in results:
        at = None
        for e in r.events:
            if isinstance(e, ev.Step):
                entered[(e.scene, e.id)] += 1
                at = (e.scene, e.id)
            elif isinstance(e, ev.Scene):
                at = (e.id, "verify")
            elif isinstance(e, ev.Error) and e.code in ("no-input", "no-match"):
                (no_input if e.code == "no-input" else no_match)[at] += 1
            elif isinstance(e, ev.Proactive):
                right = e.accepted is True or (bool(e.scene) and e.scene in r.state.scenes)
                key = {True: "accepted", False: "declined", None: "unanswered"}[e.accepted]
                for name in ("*", e.prediction):
                    asked[(name, "asked")] += 1
                    asked[(name, key)] += 1
                    asked[(name, "right")] += right
        if r.state.outcome == "transferred":
            reasons[r.state.transfer_reason] += 1
            queues[[e for e in r.events if isinstance(e, ev.Transfer)][-1].queue] += 1
        for scene in set(r.state.scenes):
            funnel.setdefault(scene, Counter())["entered"] += 1
        end = {"resolved": "resolved", "transferred": "transferred",
               "hangup-caller": "dropped"}.get(r.state.outcome, "other")
        funnel.setdefault(r.state.scene, Counter())[end] += 1
        if r.state.escalation and len(r.state.scenes) >= 2:
            funnel.setdefault(r.state.scenes[-2], Counter())["escalated"] += 1
    return {
        "calls": len(results), "outcomes": dict(outcomes), "abandoned": abandoned,
        "contained": contained, "containment": round(contained / served, 4) if served else None,
        "resolved_rate": round(outcomes["resolved"] / served, 4) if served else None,
        "average_handle_time": round(sum(duration.values()) / len(results), 2),
        "entered": entered, "no_input": no_input, "no_match": no_match,
        "reasons": reasons, "queues": queues, "funnel": funnel, "proactive": asked,
    }


# ---- a hand-made store -------------------------------------------------------------------

def _call(conn, call_id, started_at, *, outcome="", duration=None, scenes=(), escalation="",
          reason="", queue="", events=()):
    conn.execute(
        "INSERT INTO calls(id, caller, started_at, duration, outcome, transfer_queue,"
        " transfer_reason, escalation, last_scene, scenes) VALUES (?,?,?,?,?,?,?,?,?,?)",
        [call_id, "+1*****0000", started_at, duration, outcome, queue, reason, escalation,
         scenes[-1] if scenes else "", json.dumps(list(scenes))])
    for seq, event in enumerate(events, 1):
        conn.execute("INSERT INTO events(call_id, seq, t, type, data) VALUES (?,?,?,?,?)",
                     [call_id, seq, event.get("t", 0.0), event["type"], json.dumps(event)])


def step(scene, sid, kind="ask"):
    return {"type": "step", "scene": scene, "id": sid, "kind": kind}


def scene(sid):
    return {"type": "scene", "id": sid}


def error(code, where=""):
    return {"type": "error", "code": code, "message": where}


def proactive(prediction, accepted, scene_id=None):
    event = {"type": "proactive", "prediction": prediction, "accepted": accepted, "score": 0.8}
    if scene_id is not None:
        event["scene"] = scene_id
    return event


def handmade(path: Path, *, evil: str = "") -> Path:
    """Six calls (UTC times; Asia/Shanghai is +8):

    c1 2026-12-01T01:00Z resolved 30 s   welcome, main_menu, card_bill; bill_due accepted;
                                          main_menu.choose: no-input once
    c2 2026-12-01T23:30Z transferred 60 s welcome, main_menu, agent; escalation no-match
                                          (main_menu.choose no-match x2), queue agents
    c3 2026-12-02T10:00Z hangup-caller 4 s welcome (abandoned); open_claim unanswered
    c4 2026-12-02T11:00Z hangup-caller 40 s welcome, main_menu, claim_status; open_claim
                                          declined but reached claim_status (right);
                                          address_change implicit verify: no-input once
    c5 2026-12-03T09:00Z transferred 20 s welcome, claim_report; reason `evil` or injured,
                                          queue claims; renewal_due declined, no scene field
    c6 2026-12-03T09:30Z in progress      welcome
    """
    db = connect(path)
    try:
        migrate(db)
        conn = db.conn
        conn.execute("BEGIN")
        _call(conn, "c1", "2026-12-01T01:00:00.000+00:00", outcome="resolved", duration=30.0,
              scenes=("welcome", "main_menu", "card_bill"), events=[
                  scene("welcome"), step("welcome", "likely", "proactive"),
                  proactive("bill_due", True, "card_bill"), scene("main_menu"),
                  step("main_menu", "choose", "menu"), error("no-input"), scene("card_bill"),
                  step("card_bill", "tell", "say")])
        _call(conn, "c2", "2026-12-01T23:30:00.000+00:00", outcome="transferred", duration=60.0,
              scenes=("welcome", "main_menu", "agent"), escalation="no-match", reason="no-match",
              queue="agents", events=[
                  scene("welcome"), step("welcome", "likely", "proactive"), scene("main_menu"),
                  step("main_menu", "choose", "menu"), error("no-match"), error("no-match"),
                  scene("agent"), step("agent", "connect", "transfer")])
        _call(conn, "c3", "2026-12-02T10:00:00.000+00:00", outcome="hangup-caller", duration=4.0,
              scenes=("welcome",), events=[
                  scene("welcome"), step("welcome", "likely", "proactive"),
                  proactive("open_claim", None, "claim_status")])
        _call(conn, "c4", "2026-12-02T11:00:00.000+00:00", outcome="hangup-caller", duration=40.0,
              scenes=("welcome", "main_menu", "address_change", "claim_status"), events=[
                  scene("welcome"), step("welcome", "likely", "proactive"),
                  proactive("open_claim", False, "claim_status"), scene("main_menu"),
                  step("main_menu", "choose", "menu"), scene("address_change"),
                  error("no-input"), scene("claim_status"), step("claim_status", "claim_no")])
        _call(conn, "c5", "2026-12-03T09:00:00.000+00:00", outcome="transferred", duration=20.0,
              scenes=("welcome", evil or "claim_report"), reason=evil or "injured", queue="claims",
              events=[
                  scene("welcome"), step("welcome", "likely", "proactive"),
                  proactive("renewal_due", False), scene(evil or "claim_report"),
                  step(evil or "claim_report", "injured", "confirm")])
        _call(conn, "c6", "2026-12-03T09:30:00.000+00:00", scenes=(), events=[scene("welcome")])
        conn.commit()
    finally:
        db.close()
    return path
