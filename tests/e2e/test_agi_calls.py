"""Real calls through Asterisk with the FastAGI controller: SIPp dials 95511, presses keys
(RFC 4733 pcaps or SIP INFO), pauses and hangs up; the assertions look at the call store and at
Asterisk itself (CLI). See conftest.py for the `hotline_agi` handle."""

from __future__ import annotations

import json
import re
import signal
import time

import pytest

pytestmark = pytest.mark.e2e


def one(calls) -> dict:
    assert len(calls) == 1, f"expected 1 recorded call, got {len(calls)}\n{calls.sipp_tail()}"
    return calls[0]


def events(call: dict, kind: str) -> list[dict]:
    return [e for e in call["events"] if e["type"] == kind]


def hangup_event(call: dict) -> dict:
    hangups = events(call, "hangup")
    assert hangups, f"no hangup event in {call['events']}"
    return hangups[-1]


def channel_vars(hotline, name: str) -> dict[str, str]:
    out = hotline.rx(f"core show channel {name}")
    return dict(re.findall(r"^\s*(IVR_[A-Z_]+)=(.*?)\s*$", out, re.M))


def assert_works(hotline) -> None:
    """A plain call is answered by the controller again (after a restart)."""
    call = one(hotline.call("short_call.yaml"))
    assert call["scenes"][:2] == ["welcome", "main_menu"], call["scenes"]
    assert call["outcome"] == "hangup-caller"


def test_keypad_path_with_rfc4733_digits(hotline_agi):
    """Main menu 3 (cards), 2 (lost card), * (repeat), 2468, 1 (freeze), 2 (nothing else)."""
    call = one(hotline_agi.call("keypad_card_lost.yaml", dtmf="rfc4733"))
    assert call["scenes"] == ["welcome", "main_menu", "cards_menu", "card_lost", "anything_else"], call["events"]
    assert call["outcome"] == "resolved"
    assert call["ended_by"] == "ivr"
    assert hangup_event(call)["by"] == "ivr"
    inputs = [e["value"] for e in events(call, "input")]
    # "*" (the repeat escape) is shown as it is; the card digits are masked
    assert inputs == ["3", "2", "*", "****", "1", "2"], inputs
    assert len(inputs) == 6, inputs
    asked = [e for e in events(call, "prompt") if e.get("step") == "card_lost.card_last4"]
    assert len(asked) == 2, "the star should replay the card-number question"
    slots = {e["name"]: e["value"] for e in events(call, "slot")}
    assert slots.get("card_last4") == "****" and slots.get("freeze_confirmed") == "yes", slots
    lookups = [e for e in events(call, "lookup") if e.get("action") == "cards.freeze"]
    assert lookups and lookups[0]["ok"] is True
    assert any("is now frozen" in e["text"] for e in events(call, "prompt"))
    assert "2468" not in str(call["events"]), "the card digits must be masked in the store"


def test_zero_reaches_the_agent_queue(hotline_agi):
    caller = "+15550199101"
    pending = hotline_agi.call_async("agent_zero.yaml", dtmf="rfc4733")
    try:
        channel = hotline_agi.channel_of(caller, timeout=25, app="Queue")
        hotline_agi.wait_for(lambda: channel["channel"] in hotline_agi.queue_callers("agents"), 5,
                 what=f"{channel['channel']} in `queue show agents`")
        assert channel_vars(hotline_agi, channel["channel"]).get("IVR_QUEUE") == "agents"
    finally:
        calls = pending.result(timeout=90)
    call = one(calls)
    assert call["outcome"] == "transferred"
    assert call["transfer_queue"] == "agents"
    assert call["scenes"] == ["welcome", "main_menu", "agent"]
    transfers = events(call, "transfer")
    assert len(transfers) == 1 and transfers[0]["queue"] == "agents", transfers
    assert [e["value"] for e in events(call, "input")] == ["0"]
    hotline_agi.wait_no_channels(15)


def test_hangup_after_one_second(hotline_agi):
    call = one(hotline_agi.call("hangup_after_1s.yaml"))
    assert call["outcome"] == "hangup-caller"
    assert call["ended_by"] == "caller"
    assert hangup_event(call)["by"] == "caller"
    assert call["duration"] is not None and call["duration"] < 6, call["duration"]
    assert not events(call, "input")
    hotline_agi.wait_no_channels(10)


def test_hangup_mid_prompt(hotline_agi):
    call = one(hotline_agi.call("hangup_mid_prompt.yaml"))
    assert call["outcome"] == "hangup-caller"
    assert call["ended_by"] == "caller"
    assert call["last_scene"] == "main_menu"
    prompts = events(call, "prompt")
    assert prompts and prompts[-1]["step"] == "main_menu.choose", prompts
    hangup = hangup_event(call)
    assert hangup["by"] == "caller"
    # the main-menu prompt lasts well over 6 s: the caller left while it was playing
    assert hangup["t"] - prompts[-1]["t"] < 6, (prompts[-1], hangup)
    assert not events(call, "input") and not events(call, "error"), call["events"]
    hotline_agi.wait_no_channels(10)


def test_controller_down_reaches_the_fallback_queue(hotline_agi):
    caller = "+15550199104"
    try:
        hotline_agi.kill_controller(signal.SIGTERM)
        before = hotline_agi.call_ids()
        pending = hotline_agi.call_async("hold_for_agent.yaml", expect=0, wait=0)
        try:
            channel = hotline_agi.channel_of(caller, timeout=20, app="Queue")
            hotline_agi.wait_for(lambda: channel["channel"] in hotline_agi.queue_callers("agents"), 5,
                     what=f"{channel['channel']} in `queue show agents`")
            assert channel_vars(hotline_agi, channel["channel"]).get("IVR_REASON") == \
                "controller-unavailable"
        finally:
            calls = pending.result(timeout=90)
        assert calls.sipp.ok, "the caller's call failed instead of waiting in the queue\n" + calls.sipp_tail()
        assert hotline_agi.new_calls(before, caller) == [], "no controller: nothing is recorded"
        hotline_agi.wait_no_channels(10)
    finally:
        hotline_agi.up()
    assert_works(hotline_agi)


def test_controller_killed_mid_call_reaches_the_fallback_queue(hotline_agi):
    caller = "+15550199104"
    try:
        pending = hotline_agi.call_async("hold_for_agent.yaml", expect=0, wait=0)
        try:
            in_agi = hotline_agi.channel_of(caller, timeout=15, app="AGI")
            hotline_agi.kill_controller(signal.SIGKILL)
            channel = hotline_agi.channel_of(caller, timeout=25, app="Queue")
            assert channel["channel"] == in_agi["channel"], "the same call, not a new one"
            hotline_agi.wait_for(lambda: channel["channel"] in hotline_agi.queue_callers("agents"), 5,
                     what=f"{channel['channel']} in `queue show agents`")
            assert channel_vars(hotline_agi, channel["channel"]).get("IVR_REASON") == \
                "controller-unavailable"
        finally:
            calls = pending.result(timeout=90)
        assert calls.sipp.ok, "the call was dropped instead of queued\n" + calls.sipp_tail()
        hotline_agi.wait_no_channels(10)
    finally:
        hotline_agi.up()
    assert_works(hotline_agi)


def test_fifty_concurrent_calls(hotline_agi):
    started = time.monotonic()
    calls = hotline_agi.call("load_call.yaml", calls=50, rate=10, dtmf="info", wait=30,
                             sipp_timeout=180)
    assert len(calls) == 50, f"{len(calls)} of 50 calls recorded\n{calls.sipp_tail()}"
    assert len({c["call_id"] for c in calls}) == 50
    outcomes = {c["outcome"] for c in calls}
    assert outcomes == {"hangup-caller"}, outcomes
    missed = [c["scenes"] for c in calls if c["scenes"] != ["welcome", "main_menu", "cards_menu"]]
    assert not missed, f"{len(missed)} calls took another path: {missed[:3]}"
    hotline_agi.wait_no_channels(30)
    assert time.monotonic() - started < 120


def test_ivr_call_places_concurrent_calls_and_reports_them(hotline_agi):
    """`ivr call SCRIPT --calls N`, the admins' load check: N calls at once, all recorded with
    their outcome and path, and no channel left."""
    proc = hotline_agi.ivr("call", "flows/tests/call_load.yaml", "--calls", "6", "--rate", "6", "--json")
    report = json.loads(proc.stdout)
    assert report["ok"] is True, report
    assert report["sipp"]["successful"] == 6 and report["sipp"]["failed"] == 0, report
    assert report["recorded"] == report["ended"] == 6 and report["channels_left"] == 0, report
    assert report["outcomes"] == {"hangup-caller": 6}
    assert report["paths"] == {"welcome > main_menu > cards_menu": 6}
    assert report["peak_channels"] >= 6  # they overlapped
    bad = hotline_agi.ivr("call", "flows/tests/call_load.yaml", "--calls", "0", check=False)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "--calls" in bad.stderr


def test_astdb_flag_changes_the_next_call(hotline_agi):
    try:
        hotline_agi.set_flag("hotline.closed", "1")
        time.sleep(1.0)  # the controller polls AstDB every 0.5 s
        call = one(hotline_agi.call("listen_until_ivr_hangs_up.yaml", end_wait_ms=25000))
        assert call["scenes"] == ["welcome"], call["scenes"]
        assert call["ended_by"] == "ivr" and hangup_event(call)["by"] == "ivr"
        assert any("hotline is closed" in e["text"] for e in events(call, "prompt"))
    finally:
        hotline_agi.del_flag("hotline.closed")
    assert "hotline.closed" not in hotline_agi.rx("database show ivr")
    time.sleep(1.0)
    call = one(hotline_agi.call("short_call.yaml"))
    assert call["scenes"][:2] == ["welcome", "main_menu"], call["scenes"]
    assert not any("hotline is closed" in e["text"] for e in events(call, "prompt"))


def test_admin_sees_the_scene_and_can_reload(hotline_agi):
    caller = "+15550199108"
    pending = hotline_agi.call_async("admin_watch.yaml")
    try:
        channel = hotline_agi.channel_of(caller, timeout=10, app="AGI")["channel"]
        shown = hotline_agi.wait_for(lambda: channel_vars(hotline_agi, channel).get("IVR_SCENE"), 5,
                         what=f"IVR_SCENE on {channel}")
        assert shown in ("welcome", "main_menu"), shown
        variables = channel_vars(hotline_agi, channel)
        assert variables.get("IVR_CALL_ID"), variables
        assert "Dialplan reloaded" in hotline_agi.rx("dialplan reload")
        queues = hotline_agi.rx("queue show")
        for queue in ("agents", "emergency", "cards", "claims", "complaints"):
            assert re.search(rf"^{queue}\s+has", queues, re.M), f"{queue} missing:\n{queues}"
        assert "ivr-agi" in hotline_agi.rx("dialplan show 95511@ivr")
    finally:
        calls = pending.result(timeout=60)
    call = one(calls)
    assert call["call_id"] == variables["IVR_CALL_ID"]
    assert call["channel"] == channel, "the store records the Asterisk channel of the call"
    assert call["outcome"] == "hangup-caller", "the reload must not disturb a call in progress"
    hotline_agi.wait_no_channels(10)
