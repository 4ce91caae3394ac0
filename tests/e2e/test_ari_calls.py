"""Real calls through Asterisk with the ARI controller (telephony.controller: ari): SIPp dials
95511, the channel enters Stasis(hotline), and the controller plays prompts and reads keys over
ARI. The websocket is cut for real mid-call (`ari shutdown websocket sessions`: Asterisk closes
the controller's event socket) and the same call must carry on; a controller killed mid-call
and started again re-adopts the channel that was left in Stasis. See conftest.py for the
`hotline_ari` handle (`.config`, `.call`, `.call_async`, `.rx`, `.channel_of`, ...)."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SCRIPTS = Path(__file__).resolve().parent / "scripts"


def one(calls) -> dict:
    assert len(calls) == 1, f"expected 1 recorded call, got {len(calls)}\n{calls.sipp_tail()}"
    return calls[0]


def events(call: dict, kind: str) -> list[dict]:
    return [e for e in call["events"] if e["type"] == kind]


def channel_vars(hotline, name: str) -> dict[str, str]:
    out = hotline.rx(f"core show channel {name}")
    return dict(re.findall(r"^\s*(IVR_[A-Z_]+)=(.*?)\s*$", out, re.M))


def controller_log(hotline) -> str:
    path = hotline.config.var_dir / "log" / "controller.log"
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def script(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "call.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_ari_keypad_path_with_rfc4733_digits(hotline_ari):
    """Main menu 3 (cards), 2 (lost card), * (repeat), 2468, 1 (freeze), 2 (nothing else): barge-in,
    type-ahead, the repeat escape and a hangup by the IVR, all over ARI."""
    call = one(hotline_ari.call(SCRIPTS / "keypad_card_lost.yaml", dtmf="rfc4733"))
    assert call["scenes"] == ["welcome", "main_menu", "cards_menu", "card_lost", "anything_else"]
    assert call["outcome"] == "resolved" and call["ended_by"] == "ivr"
    inputs = [e["value"] for e in events(call, "input")]
    assert inputs == ["3", "2", "*", "****", "1", "2"], inputs
    asked = [e for e in events(call, "prompt") if e.get("step") == "card_lost.card_last4"]
    assert len(asked) == 2, "the star should replay the card-number question"
    assert any(e.get("action") == "cards.freeze" and e["ok"] for e in events(call, "lookup"))
    assert "2468" not in str(call["events"])
    hotline_ari.wait_no_channels(15)


def test_ari_zero_reaches_the_agent_queue_with_the_dialplan_variables(hotline_ari):
    caller = "+15550199101"
    pending = hotline_ari.call_async(SCRIPTS / "agent_zero.yaml", dtmf="rfc4733")
    try:
        channel = hotline_ari.channel_of(caller, timeout=25, app="Queue")
        hotline_ari.wait_for(lambda: channel["channel"] in hotline_ari.queue_callers("agents"), 5,
                             what=f"{channel['channel']} in `queue show agents`")
        variables = channel_vars(hotline_ari, channel["channel"])
        assert variables.get("IVR_ACTION") == "transfer" and variables.get("IVR_QUEUE") == "agents"
        assert variables.get("IVR_REASON") and variables.get("IVR_CONTEXT", "").startswith("{")
        assert variables.get("IVR_CALL_ID") and variables.get("IVR_SCENE") == "agent"
    finally:
        calls = pending.result(timeout=90)
    call = one(calls)
    assert call["outcome"] == "transferred" and call["transfer_queue"] == "agents"
    assert call["call_id"] == variables["IVR_CALL_ID"]
    hotline_ari.wait_no_channels(15)


def test_ari_websocket_cut_mid_call_and_the_same_call_continues(hotline_ari, tmp_path):
    """Asterisk closes the event websocket during the claims menu; the controller reconnects,
    finds its own channel still in Stasis (GET /channels) and the call goes on to the end."""
    caller = "+15550100005"
    path = script(tmp_path, f"""\
caller: "{caller}"
actions:
  - dtmf: "1"
  - dtmf: "1"
  - dtmf: "20261101"
  - dtmf: "2"
""")
    connected = controller_log(hotline_ari).count("ARI websocket connected")
    pending = hotline_ari.call_async(path, dtmf="info", key_gap_ms=3000)
    try:
        channel = hotline_ari.channel_of(caller, timeout=15, app="Stasis")["channel"]
        hotline_ari.wait_for(lambda: channel_vars(hotline_ari, channel).get("IVR_SCENE") == "claims_menu",
                             15, 0.05, what="the claims menu")
        out = hotline_ari.rx("ari shutdown websocket sessions")
        assert "Shutting down" in out, out
        cut_at = time.monotonic()
        hotline_ari.wait_for(lambda: controller_log(hotline_ari).count("ARI websocket connected") > connected,
                             5, 0.02, what="the controller to reconnect")
        reconnect = time.monotonic() - cut_at
        assert reconnect < 2.0, f"reconnected after {reconnect:.2f} s"
        assert "hotline" in hotline_ari.rx("ari show websocket sessions")
    finally:
        calls = pending.result(timeout=120)
    call = one(calls)
    assert call["scenes"] == ["welcome", "main_menu", "claims_menu", "claim_status", "anything_else"]
    assert call["outcome"] == "resolved" and call["ended_by"] == "ivr"
    assert [e["value"] for e in events(call, "input")] == ["1", "1", "20261101", "2"]
    log = controller_log(hotline_ari)
    assert "re-adopting" not in log.split("ARI websocket dropped")[-1], "the call must not restart"
    hotline_ari.wait_no_channels(15)


def test_ari_controller_killed_mid_call_reaches_the_fallback(hotline_ari, tmp_path):
    """ARI keeps a channel in Stasis when the app's websocket dies (unlike FastAGI, whose
    dialplan falls through). The watchdog sends it to the dialplan's fallback at once (apology,
    then the agents queue), so the caller never waits in silence, and starts a new controller."""
    caller = "+15550199107"
    path = script(tmp_path, f"""\
caller: "{caller}"
actions:
  - silence: 14
  - dtmf: "0"
  - silence: 10
  - hangup: true
""")
    pending = hotline_ari.call_async(path, dtmf="rfc4733", key_gap_ms=0, expect=0, wait=0, check=False)
    try:
        channel = hotline_ari.channel_of(caller, timeout=15, app="Stasis")["channel"]
        time.sleep(1.0)  # the greeting is playing
        hotline_ari.kill_controller(signal.SIGKILL)
        queued = hotline_ari.channel_of(caller, timeout=10, app="Queue")
        assert queued["channel"] == channel, "the same channel, sent to the fallback queue"
        assert channel_vars(hotline_ari, channel).get("IVR_REASON") == "controller-unavailable"
        hotline_ari.up()  # the watchdog has already started a new controller; this just waits
    finally:
        calls = pending.result(timeout=120)
    assert calls.sipp.ok, calls.sipp_tail()
    assert "parked calls to the fallback" in controller_log(hotline_ari)
    hotline_ari.wait_no_channels(15)
