"""Real calls that speak: SIPp streams the caller's words (synthesised by the hotline's own voice,
sent as A-law RTP), Asterisk forks them to the controller (AudioSocket), and the words route the
call. Both controllers; the speech is over the main menu, so the prompt must stop (barge-in)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e

MENU_STEP = "main_menu.choose"
MENU_SECONDS = 10.0  # the main menu prompt is longer than this when played to its end


def one(calls) -> dict:
    assert len(calls) == 1, f"expected 1 recorded call, got {len(calls)}\n{calls.sipp_tail()}"
    return calls[0]


def events(call: dict, kind: str) -> list[dict]:
    return [e for e in call["events"] if e["type"] == kind]


def check_spoken_route(call: dict, words: tuple[str, ...]) -> None:
    assert "card_lost" in call["scenes"], (call["scenes"], events(call, "input"))
    speech = [e for e in events(call, "input") if e["kind"] == "speech"]
    assert speech, events(call, "input")
    assert all(w in speech[0]["value"].lower() for w in words), speech[0]
    menu = [e for e in events(call, "prompt") if e.get("step") == MENU_STEP]
    assert menu, "the main menu was never played"
    # barge-in: the words came while the menu was still playing, and it stopped for them
    assert speech[0]["t"] - menu[0]["t"] < MENU_SECONDS, (menu[0], speech[0])
    timings = {e["name"]: e["ms"] for e in events(call, "timing")}
    assert "turn_latency" in timings and "asr" in timings and "barge_in" in timings, timings
    assert 0 < timings["asr"] < timings["turn_latency"] < 5000, timings
    # the prompt stopped soon after the caller began: the barge threshold (250 ms of speech)
    # plus detection and the stop itself; the README reports the measured figures
    assert timings["barge_in"] < 600, timings


def test_agi_call_routes_by_speech_over_the_menu(hotline_agi):
    call = one(hotline_agi.call("speak_card_lost.yaml", say_gap_ms=2500, sipp_timeout=90))
    check_spoken_route(call, ("lost", "card"))


def test_agi_mandarin_caller_routes_by_speech(hotline_agi):
    call = one(hotline_agi.call("speak_card_lost_zh.yaml", say_gap_ms=2500, sipp_timeout=90))
    assert call["lang"] == "zh"
    check_spoken_route(call, ("信用卡",))


def test_agi_speech_leaves_no_audio_channels(hotline_agi):
    """The audio fork (AudioSocket + ChanSpy channels) ends with the call."""
    one(hotline_agi.call("speak_card_lost.yaml", say_gap_ms=2500, sipp_timeout=90))
    hotline_agi.wait_for(lambda: "0 active channels" in hotline_agi.rx("core show channels count"),
                         10, what="no channels left")


def test_ari_call_routes_by_speech_over_the_menu(hotline_ari):
    call = one(hotline_ari.call("speak_card_lost.yaml", say_gap_ms=2500, sipp_timeout=90))
    check_spoken_route(call, ("lost", "card"))
    hotline_ari.wait_for(lambda: "0 active channels" in hotline_ari.rx("core show channels count"),
                         10, what="no channels left (snoop, AudioSocket, bridge)")
