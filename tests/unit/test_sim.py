"""The simulator: simulated time, script parsing and its errors, SimChannel, expectations."""

from __future__ import annotations

import textwrap

import pytest

from _flowkit import EMMA, LI_WEI, STRANGER, fixture_flows, make_flows, run, scene, services
from ivr import events as ev
from ivr.errors import CallerHangup, ScriptError
from ivr.flow.channel import TIMEOUT, CallerInput, ListenSpec, PromptOut
from ivr.flow.prompts import spoken_seconds
from ivr.flow.state import CallState
from ivr.sim import KEY_SECONDS, TAP_SECONDS, Action, Script, SimChannel, check_expectations, parse_script, simulate


# -- the time rule -----------------------------------------------------------------------------

@pytest.mark.parametrize("text,seconds", [
    ("Hello there caller.", 1.2),  # 0.4 s a word: 150 words a minute
    ("欢迎致电。", 0.8),  # 0.2 s a Chinese character; punctuation is silent
    ("请输入，然后按井号键！", 1.8),
    ("您的报案号是20261101。", 1.6),  # 6 characters + one "word" of digits
    ("Press 1 - or 2.", 1.6),
    ("", 0.0),
    ("   ", 0.0),
])
def test_spoken_seconds(text, seconds):
    assert spoken_seconds(text) == pytest.approx(seconds)


TIMED = """
- say: {en: "Hello there caller.", zh: "欢迎致电。"}
- ask: {slot: a, say: {en: "Enter four digits.", zh: "请输入四位数字。"}, validate: {type: digits, length: 4}}
- ask: {slot: b, input: [speech], say: {en: "Say it.", zh: "请说。"}}
- menu:
    say: {en: "Tap one.", zh: "请点选。"}
    options:
      - {key: "1", label: {en: one, zh: 一}, then: bye, value: one}
- id: bye
  hangup: {en: "Goodbye now.", zh: "再见。"}
"""


async def test_simulated_time_adds_up(tmp_path):
    flows = make_flows(tmp_path, {"start": scene(TIMED)})
    script = [{"dtmf": "1234"}, {"silence": 3}, {"say": "my name is Ann"}, {"click": "one"}]
    call = await run(flows, script)
    prompts = 1.2 + 1.2 + 0.8 + 0.8 + 0.8
    caller = 4 * KEY_SECONDS + 3 + 1.6 + TAP_SECONDS
    assert call.events[-1] == {"t": pytest.approx(prompts + caller), "type": "hangup", "by": "ivr"}
    ts = [e["t"] for e in call.events]
    assert ts == sorted(ts)
    assert [e["t"] for e in call.of("input")] == pytest.approx([2.4 + 1.2, 3.6 + 0.8 + 3 + 1.6,
                                                                 9.0 + 0.8 + 0.5])


async def test_simulated_time_in_mandarin(tmp_path):
    flows = make_flows(tmp_path, {"start": scene(TIMED)})
    call = await run(flows, [{"dtmf": "1234"}, {"say": "我叫安"}, {"dtmf": "1"}], lang="zh")
    prompts = 0.8 + 1.4 + 0.4 + 0.6 + 0.4
    caller = 4 * KEY_SECONDS + 0.6 + KEY_SECONDS
    assert call.events[-1]["t"] == pytest.approx(prompts + caller)


async def test_no_input_waits_the_step_timeout(tmp_path):
    flows = make_flows(tmp_path, {"start": scene("""
        - ask: {slot: a, timeout: 2.5, say: {en: "Go.", zh: "请。"},
                no_input: {retry: 0, then: hangup}}
        """)})
    call = await run(flows, [{"silence": 100}])
    assert call.errors() == ["no-input"]
    assert call.events[-1]["t"] == pytest.approx(0.4 + 2.5)


# -- SimChannel --------------------------------------------------------------------------------

async def test_sim_channel_long_silence_is_split_across_listens():
    chan = SimChannel([Action("silence", 10.0), Action("dtmf", "12")])
    spec = ListenSpec(timeout=6)
    assert await chan.listen(spec) == TIMEOUT
    assert chan.t == 6
    assert await chan.listen(spec) == CallerInput("dtmf", "12")
    assert chan.t == pytest.approx(10 + 0.6)
    with pytest.raises(CallerHangup):
        await chan.listen(spec)


async def test_sim_channel_ignored_actions_are_used_up():
    chan = SimChannel([Action("say", "hello"), Action("dtmf", "5")])
    assert await chan.listen(ListenSpec(speech=False, timeout=4)) == TIMEOUT
    assert await chan.listen(ListenSpec(speech=False, timeout=4)) == CallerInput("dtmf", "5")
    assert chan.t == pytest.approx(4 + 0.3)


async def test_sim_channel_play_transfer_hangup():
    chan = SimChannel([Action("hangup", True)])
    assert await chan.play(PromptOut("one two three", "en")) is None
    assert chan.t == pytest.approx(1.2)
    await chan.transfer("claims", {"a": 1})
    await chan.hangup()
    assert (chan.transferred_to, chan.transfer_context, chan.hung_up) == ("claims", {"a": 1}, True)
    with pytest.raises(CallerHangup):
        await chan.listen(ListenSpec())


# -- script parsing ----------------------------------------------------------------------------

def write(tmp_path, text: str, name="script.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return str(path)


def test_parse_a_list_script(tmp_path):
    script = parse_script(write(tmp_path, """
        - dtmf: 1
        - dtmf: "20261101#"
        - say: 我要查理赔
        - silence: 7
        - click: "yes"
        - say:
        - hangup: true
        """))
    assert script.actions == [Action("dtmf", "1"), Action("dtmf", "20261101#"), Action("say", "我要查理赔"),
                              Action("silence", 7.0), Action("click", "yes"), Action("say", ""),
                              Action("hangup", True)]
    assert (script.caller, script.lang, script.at, script.flags, script.expect) == (None, None, None, {}, {})


def test_parse_a_mapping_script(tmp_path):
    script = parse_script(write(tmp_path, """
        description: a claim call
        caller: "+8613800000001"
        lang: zh
        at: 2026-12-01T10:00
        flags: {closed: 0, level: red}
        actions:
          - dtmf: "1"
        expect:
          scene: claim_status
          transfer: false
        """))
    assert (script.caller, script.lang, script.at) == ("+8613800000001", "zh", "2026-12-01T10:00")
    assert script.flags == {"closed": "0", "level": "red"}
    assert script.actions == [Action("dtmf", "1")]
    assert script.expect == {"scene": "claim_status", "transfer": False}


@pytest.mark.parametrize("text,line,col,message", [
    ("- dtmf: 1\n- press: 2\n", 2, 3, "each action is one of: dtmf, say, silence, click, hangup"),
    ("- dtmf: 1\n- dtmf: 2\n  say: x\n", 2, 3, "each action is one of"),
    ("- dtmf: 1\n- just text\n", 2, 3, "each action is one of"),
    ("- dtmf: \"12x\"\n", 1, 3, "dtmf keys are 0-9 * # A-D"),
    ("- dtmf: 1.5\n", 1, 3, "dtmf keys are 0-9 * # A-D"),
    ("- silence: -1\n", 1, 3, "silence is a number of seconds (0..600)"),
    ("- silence: 601\n", 1, 3, "silence is a number of seconds (0..600)"),
    ("- silence: soon\n", 1, 3, "silence is a number of seconds (0..600)"),
    ("- silence: true\n", 1, 3, "silence is a number of seconds (0..600)"),
    ("caller: x\nactions: []\nexpected: {}\n", 3, 1, "unknown key 'expected' (known: caller, lang, at, flags, "
                                                      "actions, expect, description)"),
    ("actions:\n  - dtmf: 1\nexpect: {scene: a, screen: b}\n", 3, 9, "expect takes: scene, scenes"),
    ("actions: {dtmf: 1}\n", 1, 10, "a script is a list of caller actions"),
    ("just text\n", 1, 1, "a script is a list of caller actions"),
])
def test_script_errors_are_located(tmp_path, text, line, col, message):
    path = write(tmp_path, text)
    with pytest.raises(ScriptError) as caught:
        parse_script(path)
    err = caught.value
    assert err.code == "script-invalid"
    assert err.message.startswith(f"{path}:{line}:{col}: ")
    assert message in err.message
    assert str(err).count("script-invalid") == 1


def test_script_yaml_errors_are_located(tmp_path):
    path = write(tmp_path, "- dtmf: 1\n- say: [unclosed\n")
    with pytest.raises(ScriptError) as caught:
        parse_script(path)
    assert str(caught.value).startswith(f"script-invalid: {path}:")
    path = write(tmp_path, "- dtmf: 1\n- dtmf: 1\n\t- dtmf: 2\n", "tabs.yaml")
    with pytest.raises(ScriptError) as caught:
        parse_script(path)
    assert f"{path}:3:1: yaml-tab" in str(caught.value)
    with pytest.raises(ScriptError):
        parse_script(str(tmp_path / "missing.yaml"))


# -- expectations ------------------------------------------------------------------------------

def events_of(*items) -> list[ev.Event]:
    return list(items)


STATE = CallState(caller="", lang="en", flow_version="v", outcome="transferred", slots={"claim_no": "20261101", "n": 5})
EVENTS = events_of(
    ev.Scene(t=0.0, id="welcome"), ev.Prompt(t=0.0, text="Welcome to Harbor.", lang="en"),
    ev.Scene(t=1.0, id="main_menu"), ev.Intent(t=3.0, name="claim_status", score=0.9),
    ev.Scene(t=3.0, id="claim_status"), ev.Slot(t=4.0, name="claim_no", value="20261101"),
    ev.Transfer(t=9.5, queue="claims", reason="claim-not-found"),
)


@pytest.mark.parametrize("expect", [
    {"scene": "claim_status"},
    {"scenes": ["welcome", "claim_status"]}, {"scenes": ["welcome", "main_menu", "claim_status"]}, {"scenes": []},
    {"not_scenes": ["anything_else", "card_freeze"]},
    {"transfer": "claims"}, {"transfer": True},
    {"outcome": "transferred"},
    {"slots": {"claim_no": "20261101", "n": 5}}, {"slots": {"n": "5"}},
    {"events": [{"type": "prompt", "text": "welcome to"}, {"type": "intent", "name": "claim_status"},
                {"type": "transfer", "queue": "claims"}]},
    {"events": [{"type": "slot", "name": "claim_no", "value": 20261101}]},
    {"max_t": 9.5}, {"max_t": 10},
])
def test_expectations_pass(expect):
    assert check_expectations(expect, STATE, EVENTS) == []


@pytest.mark.parametrize("expect,failure", [
    ({"scene": "main_menu"}, "expected to end in scene 'main_menu', ended in 'claim_status'"),
    ({"scenes": ["claim_status", "welcome"]}, "expected scenes ['claim_status', 'welcome'] in order, visited "
                                              "['welcome', 'main_menu', 'claim_status']"),
    ({"not_scenes": ["main_menu"]}, "expected never to visit 'main_menu'"),
    ({"transfer": "agents"}, "expected transfer 'agents', got 'claims'"),
    ({"transfer": False}, "expected transfer False, got 'claims'"),
    ({"outcome": "resolved"}, "expected outcome 'resolved', got 'transferred'"),
    ({"slots": {"claim_no": "1"}}, "expected slot claim_no='1', got '20261101'"),
    ({"slots": {"other": "x"}}, "expected slot other='x', got None"),
    ({"events": [{"type": "transfer"}, {"type": "scene", "id": "welcome"}]},
     "expected event {'type': 'scene', 'id': 'welcome'} (and 0 after it) did not happen"),
    ({"events": [{"type": "prompt", "text": "goodbye"}, {"type": "transfer"}]},
     "expected event {'type': 'prompt', 'text': 'goodbye'} (and 1 after it) did not happen"),
    ({"max_t": 9}, "expected the call to last at most 9 s, it lasted 9.5"),
    ({"hangup": "caller"}, "expected hangup by 'caller', got []"),
])
def test_expectations_fail(expect, failure):
    assert check_expectations(expect, STATE, EVENTS) == [failure]


def test_expectations_without_a_transfer():
    state = CallState(caller="", lang="en", flow_version="v", outcome="resolved")
    events = [ev.Scene(t=0, id="a"), ev.Hangup(t=1, by="ivr")]
    assert check_expectations({"transfer": False, "hangup": "ivr", "outcome": "resolved"}, state, events) == []
    assert check_expectations({"transfer": True}, state, events) == ["expected transfer True, got False"]
    assert check_expectations({"transfer": "agents"}, state, events) == ["expected transfer 'agents', got False"]
    assert check_expectations({"scene": "a", "hangup": "caller"}, state, events) == [
        "expected hangup by 'caller', got ['ivr']"]
    assert check_expectations({"scene": "x"}, state, []) == ["expected to end in scene 'x', ended in None"]


async def test_simulate_runs_a_parsed_script(tmp_path):
    path = write(tmp_path, f"""
        caller: "{STRANGER}"
        lang: en
        actions:
          - dtmf: "1"
          - say: two oh two six one one oh two
          - dtmf: "2"
        expect:
          scenes: [start, menu, claim_status, anything_else]
          slots: {{claim_no: "20261102"}}
          events:
            - {{type: lookup, action: claims.status, ok: true}}
            - {{type: prompt, text: "approved"}}
          outcome: resolved
          hangup: ivr
          transfer: false
          max_t: 60
        """)
    result = await simulate(fixture_flows(), services(), parse_script(path))
    assert result.failures == [] and result.ok
    assert result.state.slots["claim_no"] == "20261102"
    assert result.events[-1].to_dict()["type"] == "hangup"


async def test_simulate_reports_failed_expectations(tmp_path):
    script = Script("inline", [Action("dtmf", "3")], caller=STRANGER,
                    expect={"transfer": "agents", "not_scenes": ["roadside"], "scene": "roadside"})
    result = await simulate(fixture_flows(), services(), script)
    assert not result.ok
    assert result.failures == ["expected never to visit 'roadside'", "expected transfer 'agents', got 'emergency'"]


async def test_simulate_caller_and_lang_defaults(tmp_path):
    script = Script("inline", [], expect={"outcome": "hangup-caller"})
    result = await simulate(fixture_flows(), services(), script, caller=LI_WEI)
    assert result.state.lang == "zh" and result.ok
    result = await simulate(fixture_flows(), services(), script, caller=LI_WEI, lang="en")
    assert result.state.lang == "en"
