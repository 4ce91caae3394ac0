"""The engine: escapes, retries, hostile input, loops, failures, hangups, state and resume."""

from __future__ import annotations

import dataclasses
import json

import pytest

from _flowkit import (EMMA, LI_WEI, STRANGER, fixture_flows, make_flows, run, scene, services)
from ivr.flow import engine
from ivr.flow.registry import STEP_TYPES
from ivr.flow.state import CallState
from ivr.sim import SimChannel

ASK = """
- id: q
  ask:
    slot: num
    say: {en: "Enter the number.", zh: "请输入号码。"}
    validate: {type: digits, length: 4}
- hangup: {en: "Got {num}.", zh: "收到{num}。"}
"""
MENU = """
- id: m
  menu:
    say: {en: "Press 1 for yes.", zh: "请按1。"}
    options:
      - {key: "1", label: {en: one, zh: 一}, then: ok}
- id: ok
  hangup: {en: "OK.", zh: "好。"}
"""


def flows_of(tmp_path, steps: str, **kw):
    return make_flows(tmp_path, {"start": scene(steps)}, **kw)


# -- escapes -----------------------------------------------------------------------------------

@pytest.mark.parametrize("steps,lang,action", [
    (ASK, "en", {"say": "I want an agent"}),
    (ASK, "en", {"say": "Operator!"}),
    (ASK, "zh", {"say": "我要转人工"}),
    (ASK, "en", {"dtmf": "0#"}),
    (ASK, "en", {"click": "escape:agent"}),
    (MENU, "en", {"dtmf": "0"}),
    (MENU, "zh", {"say": "人工"}),
    ("- confirm: {say: {en: Sure?, zh: 确定？}}", "en", {"say": "real person please"}),
])
async def test_agent_escape_from_any_step(tmp_path, steps, lang, action):
    call = await run(flows_of(tmp_path, steps), [action], lang=lang)
    t = call.transfer()
    assert (t["queue"], t["reason"]) == ("agents", "caller-agent")
    assert call.errors() == []
    assert call.state.outcome == "transferred"
    assert call.state.transfer_reason == "caller-agent"


async def test_agent_escape_during_verification_and_proactive(tmp_path):
    flows = flows_of(tmp_path, "- verify: {method: dob}\n- hangup: {}\n")
    call = await run(flows, [{"say": "agent"}], caller=LI_WEI)
    assert call.transfer()["reason"] == "caller-agent"
    assert call.of("verified") == []
    fixture = fixture_flows()
    call = await run(fixture, [{"dtmf": "0"}], caller=LI_WEI)  # over "Calling about claim ...?"
    assert call.steps() == ["start.step1", "start.greet", "start.likely"]
    assert call.transfer()["reason"] == "caller-agent"


async def test_an_option_on_key_0_beats_the_escape(tmp_path):
    flows = flows_of(tmp_path, """
        - menu:
            say: {en: "Press 0 for the operator menu.", zh: "请按0。"}
            options:
              - {key: "0", label: {en: zero, zh: 零}, then: ok}
        - id: ok
          hangup: {en: "Zero chosen.", zh: "零。"}
        """)
    call = await run(flows, [{"dtmf": "0"}])
    assert call.transfer() is None
    assert call.prompts()[-1] == "Zero chosen."


@pytest.mark.parametrize("again", [{"say": "repeat"}, {"say": "can you say that again"},
                                   {"dtmf": "*"}, {"say": "再说一遍"}])
async def test_repeat_replays_the_prompt(tmp_path, again):
    call = await run(flows_of(tmp_path, ASK), [again, {"dtmf": "1234"}])
    assert call.prompts() == ["Enter the number.", "Enter the number.", "Got 1234."]
    assert call.errors() == []
    assert call.state.slots["num"] == "1234"


async def test_repeat_in_a_menu_and_the_repeat_limit(tmp_path):
    call = await run(flows_of(tmp_path, MENU), [{"dtmf": "*"}] * 3 + [{"dtmf": "1"}])
    assert call.prompts() == ["Press 1 for yes."] * 4 + ["OK."]
    call = await run(flows_of(tmp_path, MENU), [{"dtmf": "*"}] * 4 + [{"dtmf": "1"}])
    assert call.prompts() == ["Press 1 for yes."] * 4
    assert call.transfer()["reason"] == "repeat-limit"


async def test_star_after_digits_deletes_instead_of_repeating(tmp_path):
    call = await run(flows_of(tmp_path, ASK), [{"dtmf": "12"}, {"dtmf": "*34"}, {"dtmf": "5"}])
    assert call.state.slots["num"] == "1345"
    assert call.prompts() == ["Enter the number.", "Got 1345."]


async def test_requires_verified_runs_verification_first():
    flows = fixture_flows()
    # "2": no to "Calling about claim ...?", then "2" for cards
    call = await run(flows, [{"dtmf": "2"}, {"dtmf": "2"}, {"dtmf": "19850412"}, {"dtmf": "4321"}],
                     caller=LI_WEI, lang="en")
    assert call.scenes()[:3] == ["start", "menu", "card_freeze"]
    assert call.of("verified")[0]["ok"] is True
    assert call.inputs() == [("dtmf", "2"), ("dtmf", "2"), ("dtmf", "****0412"), ("dtmf", "****")]
    freeze = call.state.slots["freeze"]
    assert freeze["status"] == "blocked" and freeze["last4"] == "4321"
    assert call.prompts()[3:6] == [
        "For your security, please key in your date of birth as eight digits, year first.",
        "You are verified.", "Key in the last 4 digits of the card."]


async def test_requires_verified_wrong_answers_reach_an_agent():
    call = await run(fixture_flows(), [{"dtmf": "2"}] * 2 + [{"dtmf": "19850413"}] * 3, caller=LI_WEI, lang="en")
    assert call.of("verified") == [dict(call.of("verified")[0], ok=False)]
    t = call.transfer()
    assert (t["queue"], t["reason"]) == ("agents", "verification-failed")
    assert t["context"]["verified"] is False
    assert "card_last4" not in call.state.slots


async def test_requires_verified_unknown_caller_reaches_an_agent():
    call = await run(fixture_flows(), [{"dtmf": "2"}], caller=STRANGER)
    assert call.transfer()["reason"] == "unverifiable-caller"
    assert call.inputs() == [("dtmf", "2")]


async def test_requires_verified_is_not_asked_twice():
    flows = fixture_flows()
    state = CallState(caller=LI_WEI, lang="en", flow_version=flows.version, verified=True)
    call = await run(flows, [{"dtmf": "2"}, {"dtmf": "2"}, {"dtmf": "4321"}], caller=LI_WEI, state=state)
    assert call.of("verified") == []
    assert call.state.slots["freeze"]["last4"] == "4321"


# -- no-input / no-match -----------------------------------------------------------------------

async def test_no_input_reprompts_then_escalates(tmp_path):
    call = await run(flows_of(tmp_path, ASK), [{"silence": 30}])
    p, ni = "Enter the number.", "Sorry, I didn't hear anything."
    assert call.prompts() == [p, ni, p, ni, p]
    assert call.errors() == ["no-input"] * 3
    assert [e["message"] for e in call.of("error")] == ["start.q"] * 3
    assert (call.transfer()["reason"], call.state.outcome) == ("no-input", "transferred")
    assert call.state.counters == {"start.q:no-input": 3}
    # three 6 s waits plus the prompts: 3 x 1.2 s question, 2 x 2.0 s apology
    assert call.events[-1]["t"] == pytest.approx(18 + 3.6 + 4.0)


async def test_no_input_and_no_match_are_counted_separately(tmp_path):
    script = [{"silence": 7}, {"dtmf": "9#"}, {"silence": 7}, {"dtmf": "9#"}, {"dtmf": "4321"}]
    call = await run(flows_of(tmp_path, ASK), script)
    assert call.errors() == ["no-input", "no-match", "no-input", "no-match"]
    assert call.state.slots["num"] == "4321"
    assert call.state.counters == {"start.q:no-input": 2, "start.q:no-match": 2}
    assert call.transfer() is None


async def test_step_no_input_policy(tmp_path):
    flows = flows_of(tmp_path, """
        - ask:
            slot: num
            say: {en: "Number?", zh: "号码？"}
            no_input: {say: {en: "Still there?", zh: "您还在吗？"}, retry: 1, then: gone}
        - hangup: {}
        - id: gone
          hangup: {en: "Call us back.", zh: "请再来电。"}
        """)
    call = await run(flows, [{"silence": 20}])
    assert call.prompts() == ["Number?", "Still there?", "Number?", "Call us back."]
    assert call.errors() == ["no-input", "no-input"]
    assert call.transfer() is None


async def test_short_silence_is_not_a_no_input(tmp_path):
    call = await run(flows_of(tmp_path, ASK), [{"silence": 5}, {"dtmf": "4321"}])
    assert call.errors() == []
    assert call.of("input")[0]["t"] == pytest.approx(1.2 + 5 + 1.2)


# -- hostile input -----------------------------------------------------------------------------

async def test_ten_thousand_digits_is_a_no_match_not_a_value(tmp_path):
    flows = flows_of(tmp_path, """
        - ask: {slot: num, say: {en: "Number?", zh: "号码？"}, validate: {type: digits}}
        - hangup: {en: "Got {num}.", zh: "收到{num}。"}
        """)
    call = await run(flows, [{"dtmf": "7" * 10_000 + "#"}] * 3)
    assert call.errors() == ["no-match"] * 3
    assert call.transfer()["reason"] == "no-match"
    assert "num" not in call.state.slots
    assert [v for _, v in call.inputs()] == ["7" * 64 + "…"] * 3
    assert len(json.dumps(call.events)) < 20_000


async def test_ten_thousand_digits_at_a_menu(tmp_path):
    call = await run(flows_of(tmp_path, MENU), [{"dtmf": "9" * 10_000}] * 3)
    assert call.errors() == ["no-match"] * 3
    assert call.transfer()["reason"] == "no-match"
    assert len(json.dumps(call.events)) < 20_000


HOSTILE = [
    'line one\nline two\r\n"quoted" \'single\' <script>alert(1)</script>',
    "emoji 😀🔥 and \x00nul \x07bell \x1b[31m escape \x7f",
    "x" * 100_000,
    "\n\n\t  \n",
    "DROP TABLE calls; -- {profile.name} {{claim_no}} %s %n",
]


@pytest.mark.parametrize("text", HOSTILE)
async def test_hostile_speech_at_a_menu(tmp_path, text):
    call = await run(flows_of(tmp_path, MENU), [{"say": text}, {"dtmf": "1"}])
    assert call.errors() == ["no-match"]
    assert call.prompts()[-1] == "OK."
    (kind, value), _ = call.inputs()
    assert kind == "speech"
    assert "\n" not in value and "\r" not in value and "\x00" not in value and "\x1b" not in value
    assert len(value) <= 500
    assert value == value.strip()


@pytest.mark.parametrize("text", HOSTILE[:2] + HOSTILE[4:])
async def test_hostile_speech_into_a_text_slot_is_kept_clean(tmp_path, text):
    flows = flows_of(tmp_path, "- ask: {slot: note, input: [speech], say: {en: Note?, zh: 备注？}}\n")
    call = await run(flows, [{"say": text}])
    note = call.state.slots["note"]
    assert "\n" not in note and "\x00" not in note and "\x07" not in note
    assert note == call.inputs()[0][1]
    assert call.of("slot")[0]["value"] == note
    if "<script>" in text:
        assert note == '''line one line two "quoted" 'single' <script>alert(1)</script>'''
    if "{profile.name}" in text:  # caller text is data, never a template
        assert "{profile.name}" in note


async def test_hostile_clicks_are_bounded(tmp_path):
    call = await run(flows_of(tmp_path, MENU), [{"click": "1\n" + "z" * 5000}, {"click": "escape:nothing"},
                                                 {"dtmf": "1"}])
    assert call.errors() == ["no-match", "no-match"]
    assert [len(v) <= 100 and "\n" not in v for _, v in call.inputs()] == [True, True, True]


# -- robustness --------------------------------------------------------------------------------

async def test_an_infinite_goto_loop_reaches_an_agent(tmp_path):
    flows = flows_of(tmp_path, "- id: a\n  goto: b\n- id: b\n  goto: a\n")
    call = await run(flows, [])
    assert call.errors() == ["flow-loop"]
    assert call.of("error")[0]["message"] in ("start.a", "start.b")
    assert len(call.of("step")) == engine.MAX_STEPS - 1
    t = call.transfer()
    assert (t["queue"], t["reason"]) == ("agents", "flow-loop")


async def test_a_loop_between_scenes_reaches_an_agent(tmp_path):
    flows = make_flows(tmp_path, {
        "start": scene("- say: {en: Ping., zh: 乒。}\n- goto: other\n"),
        "other": scene("- goto: start\n", sid="other"),
    })
    call = await run(flows, [])
    assert call.errors() == ["flow-loop"]
    assert call.transfer()["reason"] == "flow-loop"


async def test_an_exception_in_a_step_apologises_and_transfers(tmp_path, monkeypatch):
    async def boom(ctx, step):
        raise ZeroDivisionError("bug")

    monkeypatch.setitem(STEP_TYPES, "set", dataclasses.replace(STEP_TYPES["set"], run=boom))
    flows = flows_of(tmp_path, "- say: {en: Hello., zh: 你好。}\n- set: {a: 1}\n- say: {en: Never., zh: 从不。}\n")
    call = await run(flows, [])
    assert call.types()[-3:] == ["error", "prompt", "transfer"]
    assert call.of("error") == [dict(call.of("error")[0], code="engine-failure", message="ZeroDivisionError")]
    assert call.prompts() == ["Hello.", "Sorry, a technical problem. Connecting you."]
    t = call.transfer()
    assert (t["queue"], t["reason"]) == ("agents", "engine-failure")
    assert call.state.outcome == "transferred"


async def test_a_failing_rescue_does_not_raise(tmp_path, monkeypatch):
    async def boom(ctx, step):
        raise RuntimeError("bug")

    class DeadQueues(SimChannel):
        async def transfer(self, queue, context):
            raise ConnectionError("no queue")

    monkeypatch.setitem(STEP_TYPES, "say", dataclasses.replace(STEP_TYPES["say"], run=boom))
    call = await run(flows_of(tmp_path, "- say: {en: Hi., zh: 你好。}\n"), [], channel=DeadQueues([]))
    assert call.errors() == ["engine-failure"]


async def test_a_broken_directory_does_not_stop_the_call(tmp_path):
    class Broken:
        async def profile(self, phone):
            raise OSError("db gone")

    flows = flows_of(tmp_path, "- say: {en: 'Hi {profile.name}.', zh: 你好。}\n")
    call = await run(flows, [], caller=EMMA, lang=None, directory=Broken())
    assert call.prompts() == ["Hi ."]
    assert call.errors() == []


@pytest.mark.parametrize("script", [[], [{"dtmf": "12"}], [{"hangup": True}, {"dtmf": "1234"}]])
async def test_caller_hangup_mid_step(tmp_path, script):
    call = await run(flows_of(tmp_path, ASK), script)
    assert call.hangup() == "caller"
    assert call.types()[-1] == "hangup"
    assert call.state.outcome == "hangup-caller"
    assert call.state.step == "q"
    assert "num" not in call.state.slots
    assert not call.channel.hung_up


async def test_caller_hangup_after_transfer_keeps_transferred(tmp_path):
    call = await run(flows_of(tmp_path, "- transfer: {reason: x}\n"), [])
    assert call.state.outcome == "transferred"
    assert call.hangup() is None


# -- language ----------------------------------------------------------------------------------

@pytest.mark.parametrize("caller,lang,want", [
    (LI_WEI, None, "zh"), (EMMA, None, "en"), (LI_WEI, "en", "en"), (STRANGER, None, "en"),
    ("", "fr", "en"), (LI_WEI, "fr", "zh"), (EMMA, "zh", "zh"),
])
async def test_call_language(tmp_path, caller, lang, want):
    call = await run(flows_of(tmp_path, "- say: {en: English., zh: 中文。}\n"), [], caller=caller, lang=lang)
    assert call.state.lang == want
    assert call.events[0]["lang"] == want
    assert call.prompts() == ["English." if want == "en" else "中文。"]


async def test_call_start_event_masks_the_caller(tmp_path):
    call = await run(flows_of(tmp_path, "- hangup: {}\n"), [], caller=LI_WEI)
    start = call.events[0]
    assert (start["type"], start["caller"], start["call_id"]) == ("call_start", "+86*******0001", call.state.call_id)
    assert start["flow_version"] == call.runner.flows.version


# -- state and resume --------------------------------------------------------------------------

async def test_state_round_trips_through_json():
    call = await run(fixture_flows(), [{"dtmf": "1"}, {"dtmf": "20261101"}], caller=LI_WEI)
    state = call.state
    assert state.slots["claim"]["status"] == "under_review"
    data = json.loads(json.dumps(state.to_dict(), ensure_ascii=False))
    again = CallState.from_dict(data)
    assert again == state
    assert again.to_dict() == state.to_dict()
    assert CallState.from_dict({**data, "from_the_future": 1}) == state


async def test_resume_at_a_saved_scene_and_step():
    flows = fixture_flows()
    saved = CallState(caller=LI_WEI, lang="en", flow_version=flows.version, scene="claim_status",
                      step="report", slots={"claim_no": "20261101",
                                            "claim": {"status_text": {"en": "paid", "zh": "已赔付"}}},
                      scenes=["start", "claim_status"])
    state = CallState.from_dict(json.loads(json.dumps(saved.to_dict())))
    call = await run(flows, [{"dtmf": "2"}], caller=LI_WEI, state=state)
    assert call.prompts()[0] == "Claim 20261101 is paid."
    assert call.scenes() == ["claim_status", "anything_else"]
    assert call.steps()[0] == "claim_status.report"
    assert call.state.call_id == saved.call_id
    assert call.state.scenes == ["start", "claim_status", "claim_status", "anything_else"]
    assert call.hangup() == "ivr"


async def test_resume_at_a_scene_that_no_longer_exists_reaches_an_agent():
    flows = fixture_flows()
    state = CallState(caller=EMMA, lang="en", flow_version="old", scene="gone_scene", step="x")
    call = await run(flows, [], caller=EMMA, state=state)
    assert call.errors() == ["engine-failure"]
    assert call.transfer()["queue"] == "agents"


# -- a whole call on the fixture flow set ------------------------------------------------------

async def test_fixture_call_claim_status_then_goodbye():
    call = await run(fixture_flows(), [{"dtmf": "2"}, {"dtmf": "1"}, {"dtmf": "20261102"}, {"dtmf": "2"}],
                     caller=LI_WEI, lang="en")
    assert call.of("proactive")[0]["accepted"] is False
    assert call.scenes() == ["start", "menu", "claim_status", "anything_else"]
    assert call.prompts()[-2:] == ["Anything else? Press 1 for yes, 2 for no.", "Goodbye."]
    assert "Claim 20261102 is approved, and payment is being arranged." in call.prompts()
    assert (call.state.outcome, call.hangup()) == ("resolved", "ivr")


async def test_fixture_call_unknown_claim_goes_to_the_claims_queue():
    call = await run(fixture_flows(), [{"dtmf": "1"}, {"dtmf": "12345678"}], caller=STRANGER)
    assert call.of("lookup")[0]["ok"] is False
    assert call.errors() == ["claim-not-found"]
    t = call.transfer()
    assert (t["queue"], t["reason"]) == ("claims", "claim-not-found")
    assert call.prompts()[-2:] == ["No claim 12345678.", "Please hold for an agent."]


async def test_fixture_call_roadside_emergency():
    call = await run(fixture_flows(), [{"dtmf": "3"}], caller=STRANGER)
    assert call.of("emergency")[0]["kind"] == "breakdown"
    assert call.transfer()["queue"] == "emergency"


async def test_fixture_closed_flag():
    call = await run(fixture_flows(), [], caller=EMMA, svc=services(flags={"closed": "1"}))
    assert call.prompts() == ["We are closed."]
    assert call.hangup() == "ivr"
