"""Every step type, driven through the engine with scripted callers (router without a model)."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pytest

from _flowkit import (EMMA, LI_WEI, STRANGER, BargeChannel, actions, make_flows, run, scene)
from ivr.flow.actions import DATA_ACTIONS, ActionFailed
from ivr.flow.state import CallState
from ivr.sim import SimChannel

BYE = """
- id: done
  hangup: {en: "Done {picked}.", zh: "完成{picked}。"}
"""


def two_step_flows(tmp_path, steps: str, **kw):
    return make_flows(tmp_path, {"start": scene(steps)}, **kw)


# -- say ---------------------------------------------------------------------------------------

async def test_say_speaks_in_the_call_language_with_placeholders(tmp_path):
    flows = two_step_flows(tmp_path, """
        - set: {who: Ann}
        - say: {en: "Hello {who}, {profile.name}.", zh: "你好{who}，{profile.name}。"}
        """)
    call = await run(flows, [], caller=EMMA, lang=None)
    assert call.prompts()[0] == "Hello Ann, Emma Brown."
    call = await run(flows, [], caller=EMMA, lang="zh")
    assert call.prompts()[0] == "你好Ann，Emma Brown。"
    assert call.of("prompt")[0]["lang"] == "zh"
    assert call.of("prompt")[0]["step"] == "start.step2"


async def test_say_barge_in_keys_carry_over_to_the_next_step(tmp_path):
    flows = two_step_flows(tmp_path, """
        - say: {en: "A long welcome message that callers know by heart.", zh: "很长的欢迎词。"}
        - menu:
            slot: picked
            say: {en: "Press 1 or 2.", zh: "请按1或2。"}
            options:
              - {key: "1", label: {en: one, zh: 一}, then: done, value: one}
              - {key: "2", label: {en: two, zh: 二}, then: done, value: two}
        """ + BYE)
    chan = BargeChannel(actions([{"dtmf": "2"}]))
    call = await run(flows, [], channel=chan)
    assert call.inputs() == [("dtmf", "2")]
    assert call.state.slots["picked"] == "two"
    # the caller keyed ahead, so the menu prompt is skipped: they don't have to sit through it
    assert call.prompts() == ["A long welcome message that callers know by heart.", "Done two."]
    assert call.of("input")[0]["t"] == pytest.approx(0.7)


async def test_say_without_barge_in_keeps_playing(tmp_path):
    flows = two_step_flows(tmp_path, """
        - say:
            prompt: {en: "One two three four five.", zh: "一二三四五。"}
            barge_in: false
        - ask: {slot: picked, say: {en: "Key it.", zh: "请输入。"}, validate: {type: digits, length: 1}}
        """ + BYE)
    chan = BargeChannel(actions([{"dtmf": "7"}]))
    call = await run(flows, [], channel=chan)
    # 5 words (2.0 s) unbroken, then "Key it." (0.8 s) is cut by the key after its first word
    assert call.state.slots["picked"] == "7"
    assert call.of("input")[0]["t"] == pytest.approx(2.0 + 0.7)


# -- menu --------------------------------------------------------------------------------------

MENU = """
- id: choose
  menu:
    slot: picked
    say: {en: "Press 1 for claims or 2 for cards.", zh: "理赔请按1，银行卡请按2。"}
    options:
      - key: "1"
        label: {en: claims, zh: 理赔}
        words: {en: [claim, claims], zh: [理赔]}
        then: done
        value: claims
      - key: "2"
        label: {en: cards, zh: 银行卡}
        words: {en: [card], zh: [银行卡]}
        then: card_step
- id: card_step
  set: {picked: card_step}
""" + BYE


async def test_menu_by_key(tmp_path):
    call = await run(two_step_flows(tmp_path, MENU), [{"dtmf": "1"}])
    assert call.inputs() == [("dtmf", "1")]
    assert call.of("slot")[0] == {"t": call.of("slot")[0]["t"], "type": "slot", "name": "picked",
                                  "value": "claims"}
    assert call.prompts() == ["Press 1 for claims or 2 for cards.", "Done claims."]
    assert call.hangup() == "ivr"


async def test_menu_slot_takes_the_target_when_no_value(tmp_path):
    call = await run(two_step_flows(tmp_path, MENU), [{"dtmf": "2"}])
    assert call.steps() == ["start.choose", "start.card_step", "start.done"]
    assert call.state.slots["picked"] == "card_step"


@pytest.mark.parametrize("lang,text,want", [
    ("en", "my card please", "card_step"),
    ("en", "a claim", "claims"),
    ("zh", "查理赔", "claims"),
    ("zh", "银行卡业务", "card_step"),
])
async def test_menu_by_speech_words(tmp_path, lang, text, want):
    call = await run(two_step_flows(tmp_path, MENU), [{"say": text}], lang=lang)
    assert call.inputs() == [("speech", text)]
    assert [e["name"] for e in call.of("intent")] == [want]
    assert call.state.slots["picked"] == want


async def test_menu_by_click(tmp_path):
    call = await run(two_step_flows(tmp_path, MENU), [{"click": "claims"}])
    assert call.inputs() == [("click", "claims")]
    assert call.state.slots["picked"] == "claims"
    call = await run(two_step_flows(tmp_path, MENU), [{"click": "card_step"}])
    assert call.state.slots["picked"] == "card_step"


async def test_menu_no_match_retries_then_escalates(tmp_path):
    call = await run(two_step_flows(tmp_path, MENU), [{"dtmf": "9"}, {"dtmf": "8"}, {"say": "bananas"}])
    p, nm = "Press 1 for claims or 2 for cards.", "Sorry, I didn't catch that."
    assert call.prompts() == [p, nm, p, nm, p]
    assert call.errors() == ["no-match"] * 3
    assert call.of("error")[0]["message"] == "start.choose"
    assert call.transfer()["queue"] == "agents"
    assert call.transfer()["reason"] == "no-match"
    assert call.state.outcome == "transferred"
    assert call.state.counters == {"start.choose:no-match": 3}


async def test_menu_no_match_then_a_valid_key(tmp_path):
    call = await run(two_step_flows(tmp_path, MENU), [{"dtmf": "9"}, {"dtmf": "1"}])
    assert call.errors() == ["no-match"]
    assert call.state.slots["picked"] == "claims"
    assert call.transfer() is None


async def test_menu_step_no_match_policy(tmp_path):
    flows = two_step_flows(tmp_path, """
        - id: choose
          menu:
            say: {en: "Press 1.", zh: "请按1。"}
            options:
              - {key: "1", label: {en: one, zh: 一}, then: done}
            no_match: {say: {en: "Only 1 works.", zh: "只能按1。"}, retry: 1, then: fallback}
        - id: fallback
          set: {picked: fallback}
        """ + BYE)
    call = await run(flows, [{"dtmf": "5"}, {"dtmf": "6"}])
    assert call.prompts() == ["Press 1.", "Only 1 works.", "Press 1.", "Done fallback."]
    assert call.errors() == ["no-match", "no-match"]
    assert call.transfer() is None


ROUTED = {
    "start": scene("""
        - menu:
            route: true
            say: {en: "Press 1 for claims.", zh: "理赔请按1。"}
            options:
              - {key: "1", label: {en: claims, zh: 理赔}, words: {en: [claim]}, then: claims}
        """),
    "claims": """
        id: claims
        title: {en: Claims, zh: 理赔}
        intents: {en: ["where is my claim"], zh: ["理赔进度"]}
        steps:
          - hangup: {en: "Claims.", zh: "理赔。"}
        """,
    "refund": """
        id: refund
        title: {en: Refunds, zh: 退款}
        intents: {en: ["I want a refund", "give me my money back"], zh: ["我要退款"]}
        steps:
          - hangup: {en: "Refunds.", zh: "退款。"}
        """,
}


@pytest.mark.parametrize("lang,text", [("en", "a refund please"), ("zh", "我要退款")])
async def test_menu_route_reaches_a_scene_by_intent(tmp_path, lang, text):
    call = await run(make_flows(tmp_path, ROUTED), [{"say": text}], lang=lang)
    assert call.scenes() == ["start", "refund"]
    assert [(e["name"], e["score"]) for e in call.of("intent")] == [("refund", 1.0)]
    assert call.prompts()[-1] in ("Refunds.", "退款。")


async def test_menu_without_route_does_not_leave_its_options(tmp_path):
    flows = dict(ROUTED, start=ROUTED["start"].replace("route: true", "route: false"))
    call = await run(make_flows(tmp_path, flows), [{"say": "a refund please"}, {"dtmf": "1"}])
    assert call.errors() == ["no-match"]
    assert call.scenes() == ["start", "claims"]


CLARIFY = """
- id: choose
  menu:
    slot: picked
    say: {en: "What about your card?", zh: "银行卡什么业务？"}
    options:
      - {key: "1", label: {en: card bill, zh: 账单}, words: {en: [bill]}, then: done, value: bill}
      - {key: "2", label: {en: card limit, zh: 额度}, words: {en: [limit]}, then: lim, value: limit}
- id: lim
  goto: done
""" + BYE


@pytest.mark.parametrize("answer,want", [
    ({"dtmf": "1"}, "bill"), ({"dtmf": "2"}, "limit"),
    ({"say": "the card limit"}, "limit"), ({"say": "card bill"}, "bill"),
    ({"say": "the first one"}, "bill"), ({"say": "the second one"}, "limit"),
    ({"say": "第二个"}, "limit"),
])
async def test_menu_clarifies_between_two_close_options(tmp_path, answer, want):
    call = await run(two_step_flows(tmp_path, CLARIFY), [{"say": "bill or limit"}, answer])
    assert call.prompts()[1] == ("Is this about card bill, or card limit? "
                                 "Press 1 for card bill, or 2 for card limit.")
    assert [e["name"] for e in call.of("intent")] == ["clarify", want]
    assert call.state.slots["picked"] == want
    assert call.prompts()[-1] == f"Done {want}."
    assert "_a" not in call.state.slots and "_b" not in call.state.slots


async def test_menu_clarify_unanswered_counts_as_no_match(tmp_path):
    call = await run(two_step_flows(tmp_path, CLARIFY), [{"say": "bill or limit"}, {"dtmf": "7"},
                                                           {"dtmf": "2"}])
    assert call.errors() == ["no-match"]
    assert call.prompts()[2:4] == ["Sorry, I didn't catch that.", "What about your card?"]
    assert call.inputs()[-1] == ("dtmf", "2")
    assert [e["name"] for e in call.of("intent")] == ["clarify"]


# -- ask ---------------------------------------------------------------------------------------

def ask_flows(tmp_path, validate: str, extra: str = ""):
    return two_step_flows(tmp_path, f"""
        - id: q
          ask:
            slot: picked
            say: {{en: "Enter it.", zh: "请输入。"}}
            validate: {validate}
        {extra}""" + BYE)


@pytest.mark.parametrize("validate,script,want", [
    ("{type: digits, length: 8}", [{"dtmf": "20261101"}], "20261101"),
    ("{type: digits, length: 4}", [{"dtmf": "12"}, {"dtmf": "34"}], "1234"),
    ("{type: digits, length: 4}", [{"dtmf": "123*45"}], "1245"),
    ("{type: digits}", [{"dtmf": "1235*4#"}], "1234"),
    ("{type: digits, min_length: 2, max_length: 6}", [{"dtmf": "123#"}], "123"),
    ("{type: digits, length: 4}", [{"say": "four five six seven"}], "4567"),
    ("{type: digits, length: 4}", [{"say": "四五六七"}], "4567"),
    ("{type: luhn}", [{"dtmf": "4111111111111111#"}], "4111111111111111"),
    ("{type: regex, pattern: 'P\\d{6}'}", [{"say": "P100001"}], "P100001"),
    ("{type: regex, pattern: '\\d{6}'}", [{"say": "one two three four five six"}], "123456"),
    ("{type: date, past: true}", [{"dtmf": "19850412"}], "1985-04-12"),
    ("{type: date}", [{"say": "two oh two six one two three one"}], "2026-12-31"),
    ("{type: yesno}", [{"dtmf": "2"}], "no"),
    ("{type: yesno}", [{"say": "是的"}], "yes"),
    ("{type: amount, min: 1, max: 5000}", [{"dtmf": "1250#"}], "1250.00"),
    ("{type: amount, max: 5000}", [{"say": "about 99.5 dollars"}], "99.50"),
    ("{type: text}", [{"say": "  12 Harbour   Road  "}], "12 Harbour Road"),
    ("{type: choice, choices: [silver, gold]}", [{"say": "gold please"}], "gold"),
    ("{type: choice, choices: [silver, gold]}", [{"dtmf": "1#"}], "silver"),
])
async def test_ask_each_validator(tmp_path, validate, script, want):
    call = await run(ask_flows(tmp_path, validate), script)
    assert call.errors() == []
    assert call.state.slots["picked"] == want
    assert call.prompts() == ["Enter it.", f"Done {want}."]


@pytest.mark.parametrize("validate,bad", [
    ("{type: digits, length: 8}", {"dtmf": "123#"}),
    ("{type: luhn}", {"dtmf": "4111111111111112#"}),
    ("{type: date, past: true}", {"dtmf": "20230230"}),
    ("{type: date, past: true}", {"dtmf": "20991231"}),
    ("{type: yesno}", {"say": "maybe"}),
    ("{type: amount, min: 1, max: 5000}", {"dtmf": "9999#"}),
    ("{type: choice, choices: [silver, gold]}", {"say": "platinum"}),
    ("{type: regex, pattern: 'P\\d{6}'}", {"say": "Q123456"}),
])
async def test_ask_rejects_invalid_then_accepts(tmp_path, validate, bad):
    good = {"dtmf": "1"} if "yesno" in validate else {"dtmf": "1#"} if "choice" in validate else None
    good = good or {"digits": {"dtmf": "20261101"}, "luhn": {"dtmf": "4111111111111111#"},
                    "date": {"dtmf": "19850412"}, "amount": {"dtmf": "100#"},
                    "regex": {"say": "P123456"}}[validate.split()[1].rstrip(",}")]
    call = await run(ask_flows(tmp_path, validate), [bad, good])
    assert call.errors() == ["no-match"]
    assert call.prompts()[:3] == ["Enter it.", "Sorry, I didn't catch that.", "Enter it."]
    assert "picked" in call.state.slots


async def test_ask_interdigit_timeout_submits_what_was_keyed(tmp_path):
    call = await run(ask_flows(tmp_path, "{type: digits, min_length: 2, max_length: 6}"),
                     [{"dtmf": "123"}, {"silence": 5}])
    assert call.state.slots["picked"] == "123"
    # 0.4 s prompt word pair + 3 keys + the 4 s interdigit wait
    assert call.of("input")[0]["t"] == pytest.approx(0.8 + 0.9 + 4.0)


async def test_ask_keeps_extra_keys_as_type_ahead(tmp_path):
    flows = two_step_flows(tmp_path, """
        - ask: {slot: a, say: {en: "First.", zh: "一。"}, validate: {type: digits, length: 2}}
        - ask: {slot: b, say: {en: "Second.", zh: "二。"}, validate: {type: digits, length: 1}}
        """)
    call = await run(flows, [{"dtmf": "123"}])
    assert (call.state.slots["a"], call.state.slots["b"]) == ("12", "3")
    assert call.inputs() == [("dtmf", "12"), ("dtmf", "3")]


async def test_ask_is_skipped_when_the_slot_is_filled(tmp_path):
    flows = two_step_flows(tmp_path, """
        - set: {picked: "11112222"}
        - ask: {slot: picked, say: {en: "Enter it.", zh: "请输入。"}, validate: {type: digits, length: 8}}
        """ + BYE)
    call = await run(flows, [{"dtmf": "99998888"}])
    assert call.prompts() == ["Done 11112222."]
    assert call.inputs() == []


async def test_ask_reask_asks_even_when_filled(tmp_path):
    flows = two_step_flows(tmp_path, """
        - set: {picked: "11112222"}
        - ask: {slot: picked, reask: true, say: {en: "Enter it.", zh: "请输入。"}, validate: {type: digits, length: 8}}
        """ + BYE)
    call = await run(flows, [{"dtmf": "99998888"}])
    assert call.prompts() == ["Enter it.", "Done 99998888."]


async def test_ask_then_target(tmp_path):
    flows = two_step_flows(tmp_path, """
        - ask: {slot: picked, then: done, say: {en: "Enter it.", zh: "请输入。"}, validate: {type: digits, length: 1}}
        - hangup: {en: "Skipped.", zh: "跳过。"}
        """ + BYE)
    call = await run(flows, [{"dtmf": "5"}])
    assert call.prompts() == ["Enter it.", "Done 5."]


async def test_ask_speech_only_ignores_keys(tmp_path):
    flows = two_step_flows(tmp_path, """
        - ask: {slot: picked, input: [speech], say: {en: "Say it.", zh: "请说。"}}
        """ + BYE)
    call = await run(flows, [{"dtmf": "5"}, {"dtmf": "5"}, {"dtmf": "5"}])
    assert call.errors() == ["no-input"] * 3
    assert call.transfer()["reason"] == "no-input"
    call = await run(flows, [{"say": "hello there"}])
    assert call.state.slots["picked"] == "hello there"


async def test_ask_dtmf_only_ignores_speech(tmp_path):
    flows = two_step_flows(tmp_path, """
        - ask: {slot: picked, input: [dtmf], say: {en: "Key it.", zh: "请按。"}, validate: {type: digits, length: 2}}
        """ + BYE)
    call = await run(flows, [{"say": "four two"}, {"dtmf": "42"}])
    assert call.errors() == ["no-input"]
    assert call.inputs() == [("dtmf", "42")]
    assert call.state.slots["picked"] == "42"


async def test_ask_sensitive_masks_slot_and_input_events_and_transfer(tmp_path):
    flows = two_step_flows(tmp_path, """
        - ask: {slot: card, sensitive: true, say: {en: "Card?", zh: "卡号？"}, validate: {type: digits, length: 8}}
        - ask: {slot: pin, sensitive: true, say: {en: "Last four?", zh: "后四位？"}, validate: {type: digits, length: 4}}
        - transfer: {reason: test}
        """)
    call = await run(flows, [{"dtmf": "12345678"}, {"say": "four three two one"}])
    assert call.inputs() == [("dtmf", "****5678"), ("speech", "[sensitive]")]
    assert [(e["name"], e["value"]) for e in call.of("slot")] == [("card", "****5678"), ("pin", "****")]
    assert call.state.slots == {"card": "12345678", "pin": "4321"}  # the engine keeps the real value
    assert call.channel.transfer_context["slots"] == {"card": "****5678", "pin": "****"}
    assert "4321" not in str(call.events) and "12345678" not in str(call.events)


async def test_not_sensitive_card_numbers_are_still_masked_in_events(tmp_path):
    call = await run(ask_flows(tmp_path, "{type: luhn}"), [{"dtmf": "4111111111111111#"}])
    assert call.inputs() == [("dtmf", "************1111")]
    assert call.of("slot")[0]["value"] == "************1111"


# -- confirm -----------------------------------------------------------------------------------

CONFIRM = """
- confirm:
    slot: picked
    say: {en: "Correct? Press 1 for yes, 2 for no.", zh: "对吗？是请按1，不是请按2。"}
    yes: done
    no: said_no
- id: said_no
  hangup: {en: "No then.", zh: "那好吧。"}
""" + BYE


@pytest.mark.parametrize("lang,answer,want", [
    ("en", {"dtmf": "1"}, "yes"), ("en", {"dtmf": "2"}, "no"),
    ("en", {"say": "yes please"}, "yes"), ("en", {"say": "no, that's wrong"}, "no"),
    ("en", {"say": "yeah"}, "yes"), ("en", {"say": "nope"}, "no"),
    ("zh", {"say": "是的"}, "yes"), ("zh", {"say": "对"}, "yes"),
    ("zh", {"say": "不是"}, "no"), ("zh", {"say": "不对"}, "no"),
    ("en", {"click": "yes"}, "yes"), ("en", {"click": "no"}, "no"),
])
async def test_confirm(tmp_path, lang, answer, want):
    call = await run(two_step_flows(tmp_path, CONFIRM), [answer], lang=lang)
    assert call.state.slots["picked"] == want
    last = call.prompts()[-1]
    if want == "yes":
        assert last in ("Done yes.", "完成yes。")
    else:
        assert last in ("No then.", "那好吧。")


async def test_confirm_neither_yes_nor_no_reprompts(tmp_path):
    call = await run(two_step_flows(tmp_path, CONFIRM), [{"say": "purple"}, {"dtmf": "3"}, {"dtmf": "1"}])
    assert call.errors() == ["no-match", "no-match"]
    assert call.state.slots["picked"] == "yes"


async def test_confirm_defaults_continue_to_next_step(tmp_path):
    flows = two_step_flows(tmp_path, """
        - confirm: {say: {en: "Sure?", zh: "确定？"}}
        - set: {picked: after}
        """ + BYE)
    call = await run(flows, [{"dtmf": "2"}])
    assert call.prompts() == ["Sure?", "Done after."]


# -- branch ------------------------------------------------------------------------------------

BRANCH = """
- set: {{amount: "250", kind: car, nested: {{code: X1}}}}
- branch:
    cases:
      - if: {cond}
        then: yes_step
    else: no_step
- id: yes_step
  hangup: {{en: "YES", zh: "是"}}
- id: no_step
  hangup: {{en: "NO", zh: "否"}}
"""
SAT = datetime(2026, 12, 5, 10, 0)  # Saturday
NIGHT = datetime(2026, 12, 1, 22, 0)  # Tuesday, after hours
NATIONAL_DAY = datetime(2026, 10, 1, 10, 0)  # a Thursday, a CN public holiday


@pytest.mark.parametrize("cond,setup,want", [
    ("{slot: amount, gt: 100}", {}, True),
    ("{slot: amount, le: 100}", {}, False),
    ("{slot: kind, eq: CAR}", {}, True),
    ("{slot: kind, in: [home, life]}", {}, False),
    ("{slot: kind, not_in: [home, life]}", {}, True),
    ("{slot: nested.code, matches: '^X\\d$'}", {}, True),
    ("{slot: missing, exists: true}", {}, False),
    ("{slot: missing, exists: false}", {}, True),
    ("{slot: missing, gt: 1}", {}, False),
    ("{slot: kind}", {}, True),
    ("{profile: lang, eq: zh}", {"caller": LI_WEI}, True),
    ("{profile: lang, eq: zh}", {"caller": EMMA}, False),
    ("{profile: open_claim.number, eq: '20261101'}", {"caller": LI_WEI}, True),
    ("{profile: open_claim, exists: true}", {"caller": STRANGER}, False),
    ("{known_caller: true}", {"caller": EMMA}, True),
    ("{known_caller: true}", {"caller": STRANGER}, False),
    ("{flag: promo}", {"flags": {"promo": "on"}}, True),
    ("{flag: promo}", {"flags": {"promo": "off"}}, False),
    ("{flag: promo}", {}, False),
    ("{flag: level, eq: red}", {"flags": {"level": "red"}}, True),
    ("{verified: true}", {"verified": True}, True),
    ("{verified: true}", {}, False),
    ("{verified: false}", {}, True),
    ("{business_hours: true}", {}, True),
    ("{business_hours: true}", {"at": NIGHT}, False),
    ("{business_hours: true}", {"at": SAT}, False),
    ("{business_hours: true}", {"at": NATIONAL_DAY}, False),
    ("{holiday: true}", {"at": NATIONAL_DAY}, True),
    ("{holiday: true}", {}, False),
    ("{weekday: [sat, sun]}", {"at": SAT}, True),
    ("{weekday: [sat, sun]}", {}, False),
    ("{weekday: tue}", {}, True),
    ("{lang: zh}", {"lang": "zh"}, True),
    ("{lang: zh}", {}, False),
    ("{all: [{slot: kind, eq: car}, {slot: amount, ge: 250}]}", {}, True),
    ("{all: [{slot: kind, eq: car}, {slot: amount, gt: 250}]}", {}, False),
    ("{any: [{slot: kind, eq: home}, {lang: en}]}", {}, True),
    ("{any: [{slot: kind, eq: home}, {lang: zh}]}", {}, False),
    ("{not: {slot: kind, eq: car}}", {}, False),
    ("{not: {any: [{holiday: true}, {weekday: [sat, sun]}]}}", {}, True),
])
async def test_branch_conditions(tmp_path, cond, setup, want):
    flows = two_step_flows(tmp_path, BRANCH.format(cond=cond))
    setup = dict(setup)
    state = None
    if setup.pop("verified", False):
        state = CallState(caller=setup.get("caller", ""), lang="en", flow_version=flows.version, verified=True)
    call = await run(flows, [], caller=setup.pop("caller", ""), lang=setup.pop("lang", "en"), state=state,
                     **setup)
    assert call.prompts()[-1] in (("YES", "是") if want else ("NO", "否"))


async def test_branch_without_else_falls_through(tmp_path):
    flows = two_step_flows(tmp_path, """
        - branch:
            - if: {lang: zh}
              then: done
        - set: {picked: fell}
        """ + BYE)
    call = await run(flows, [])
    assert call.prompts() == ["Done fell."]
    assert call.steps() == ["start.step1", "start.step2", "start.done"]


async def test_when_skips_a_step(tmp_path):
    flows = two_step_flows(tmp_path, """
        - say: {en: "Chinese only.", zh: "只有中文。"}
          when: {lang: zh}
        - say: {en: "Everyone.", zh: "大家。"}
        """)
    call = await run(flows, [])
    assert call.prompts() == ["Everyone."]
    assert "start.step1" not in call.steps()
    call = await run(flows, [], lang="zh")
    assert call.prompts()[:2] == ["只有中文。", "大家。"]


# -- set ---------------------------------------------------------------------------------------

async def test_set_renders_placeholders_and_switches_language(tmp_path):
    flows = two_step_flows(tmp_path, """
        - set: {greeting: "Hi {profile.name}", count: 3, lang: zh}
        - say: {en: "{greeting}", zh: "中文：{greeting} {count}"}
        """)
    call = await run(flows, [], caller=EMMA)
    assert [(e["name"], e["value"]) for e in call.of("slot")] == [
        ("greeting", "Hi Emma Brown"), ("count", "3"), ("lang", "zh")]
    assert call.state.lang == "zh"
    assert call.prompts()[0] == "中文：Hi Emma Brown 3"
    assert call.of("prompt")[0]["lang"] == "zh"
    assert call.state.slots["count"] == 3


async def test_set_unknown_language_is_just_a_slot(tmp_path):
    flows = two_step_flows(tmp_path, """
        - set: {lang: fr}
        - say: {en: "English.", zh: "中文。"}
        """)
    call = await run(flows, [])
    assert call.state.lang == "en"
    assert call.prompts()[0] == "English."


# -- lookup ------------------------------------------------------------------------------------

LOOKUP = """
- set: {{claim_no: "20261101"}}
- lookup:
    action: {action}
    args: {{number: "{{claim_no}}"}}
    save_as: claim
    on_error: failed
- say: {{en: "Status {{claim.status_text}}.", zh: "状态{{claim.status_text}}。"}}
- goto: hangup
- id: failed
  hangup: {{en: "Lookup failed.", zh: "查询失败。"}}
"""


async def test_lookup_success_saves_the_result(tmp_path):
    call = await run(two_step_flows(tmp_path, LOOKUP.format(action="claims.status")), [])
    assert call.of("lookup") == [{"t": 0.0, "type": "lookup", "action": "claims.status", "ok": True}]
    assert call.state.slots["claim"]["status"] == "under_review"
    assert call.prompts()[0] == "Status under review by an adjuster."
    call = await run(two_step_flows(tmp_path, LOOKUP.format(action="claims.status")), [], lang="zh")
    assert call.prompts()[0] == "状态正在审核中。"


async def test_lookup_action_failed_goes_to_on_error(tmp_path):
    flows = two_step_flows(tmp_path, LOOKUP.format(action="claims.status").replace("20261101", "99999999"))
    call = await run(flows, [])
    assert call.of("lookup")[0]["ok"] is False
    assert call.of("error") == [{"t": 0.0, "type": "error", "code": "claim-not-found",
                                 "message": "no claim 99999999"}]
    assert call.prompts() == ["Lookup failed."]
    assert "claim" not in call.state.slots


async def test_lookup_exception_goes_to_on_error(tmp_path, monkeypatch):
    async def broken(ctx, args):
        raise ConnectionError("backend down")

    monkeypatch.setitem(DATA_ACTIONS, "test.broken", broken)
    call = await run(two_step_flows(tmp_path, LOOKUP.format(action="test.broken")), [])
    assert call.of("lookup")[0] == {"t": 0.0, "type": "lookup", "action": "test.broken", "ok": False}
    assert call.of("error")[0]["code"] == "lookup-failed"
    assert call.of("error")[0]["message"] == "ConnectionError"
    assert call.prompts() == ["Lookup failed."]
    assert call.transfer() is None


async def test_lookup_args_templating_and_default_slot_name(tmp_path, monkeypatch):
    seen = {}

    async def record(ctx, args):
        seen.update(args=args, caller=ctx.caller, lang=ctx.lang, verified=ctx.verified)
        return {"ok": 1}

    monkeypatch.setitem(DATA_ACTIONS, "test.record", record)
    flows = two_step_flows(tmp_path, """
        - set: {claim_no: "20261101"}
        - lookup:
            action: test.record
            args: {number: "{claim_no}", who: "{profile.name}", count: 2, missing: "[{nope}]"}
        """)
    call = await run(flows, [], caller=EMMA)
    assert seen == {"args": {"number": "20261101", "who": "Emma Brown", "count": 2, "missing": "[]"},
                    "caller": EMMA, "lang": "en", "verified": False}
    assert call.state.slots["test_record"] == {"ok": 1}


async def test_lookup_default_on_error_is_the_agent(tmp_path, monkeypatch):
    async def fail(ctx, args):
        raise ActionFailed("nope", code="test-failed")

    monkeypatch.setitem(DATA_ACTIONS, "test.fail", fail)
    call = await run(two_step_flows(tmp_path, "- lookup: test.fail\n- say: {en: x, zh: x}"), [])
    assert call.errors() == ["test-failed"]
    assert call.transfer()["queue"] == "agents"


# -- proactive ---------------------------------------------------------------------------------

PROACTIVE = {
    "start": scene("""
        - proactive:
            threshold: {threshold}
            rules:
              - name: bill_due
                if: {profile: bill_due, exists: true}
                scene: target
                score: 0.7
                slots: {topic: bill}
                say: {en: "About your bill? Press 1 for yes, 2 for no.", zh: "账单吗？"}
              - name: open_claim
                if: {profile: open_claim, exists: true}
                scene: target
                score: 0.9
                slots: {topic: claim, claim_no: "{profile.open_claim.number}"}
                say: {en: "About claim {profile.open_claim.number}? Press 1 for yes, 2 for no.", zh: "理赔{profile.open_claim.number}吗？"}
        - hangup: {en: "Menu.", zh: "菜单。"}
        """),
    "target": """
        id: target
        title: {en: Target, zh: 目标}
        steps:
          - hangup: {en: "Target {topic} {claim_no}.", zh: "目标{topic}{claim_no}。"}
        """,
}


def proactive_flows(tmp_path, threshold=0.5):
    return make_flows(tmp_path, {k: v.replace("{threshold}", str(threshold)) if k == "start" else v
                                 for k, v in PROACTIVE.items()})


@pytest.mark.parametrize("answer", [{"dtmf": "1"}, {"say": "yes"}, {"click": "yes"}])
async def test_proactive_asks_the_best_rule_and_yes_jumps(tmp_path, answer):
    call = await run(proactive_flows(tmp_path), [answer], caller=LI_WEI)
    assert call.prompts() == ["About claim 20261101? Press 1 for yes, 2 for no.", "Target claim 20261101."]
    (event,) = call.of("proactive")
    assert {k: event[k] for k in ("prediction", "accepted", "scene")} == \
        {"prediction": "open_claim", "accepted": True, "scene": "target"}
    # Li Wei's last call went to claim_status, not to `target`: her history lowers the rule's 0.9
    parts = event["parts"]
    assert parts["rule"] == parts["similar"] == 0.9 and parts["own_hits"] == 0 and parts["own_calls"] > 0
    assert event["score"] == pytest.approx((0 + 2 * 0.9) / (parts["own_calls"] + 2), abs=0.002)
    assert [(e["name"], e["value"]) for e in call.of("slot")] == [("topic", "claim"), ("claim_no", "20261101")]
    assert call.scenes() == ["start", "target"]


async def test_proactive_no_continues(tmp_path):
    call = await run(proactive_flows(tmp_path), [{"say": "no"}], caller=LI_WEI)
    assert call.of("proactive")[0]["accepted"] is False
    assert call.prompts()[-1] == "Menu."
    assert call.scenes() == ["start"]
    assert call.of("slot") == []


async def test_proactive_silence_continues_with_unknown_answer(tmp_path):
    call = await run(proactive_flows(tmp_path), [{"silence": 7}], caller=LI_WEI)
    assert call.of("proactive")[0]["accepted"] is None
    assert call.prompts()[-1] == "Menu."


async def test_proactive_below_threshold_or_no_rule_is_skipped(tmp_path):
    call = await run(proactive_flows(tmp_path, threshold=0.95), [{"dtmf": "1"}], caller=LI_WEI)
    assert call.prompts() == ["Menu."]
    assert call.of("proactive") == []
    call = await run(proactive_flows(tmp_path), [{"dtmf": "1"}], caller=STRANGER)
    assert call.prompts() == ["Menu."]


async def test_proactive_picks_the_only_matching_rule(tmp_path):
    # Emma has no card bill due and an approved (open) claim
    call = await run(proactive_flows(tmp_path), [{"dtmf": "1"}], caller=EMMA)
    assert call.of("proactive")[0]["prediction"] == "open_claim"
    assert call.prompts()[-1] == "Target claim 20261102."


# -- sms_link ----------------------------------------------------------------------------------

async def test_sms_link_event_masks_number_and_url(tmp_path):
    flows = two_step_flows(tmp_path, """
        - sms_link:
            purpose: documents
            say: {en: "I sent you a link.", zh: "已发送链接。"}
        """)
    call = await run(flows, [], caller=EMMA)
    sent = call.services.sms.sent
    assert len(sent) == 1 and sent[0].to == EMMA and sent[0].purpose == "documents"
    assert sent[0].call_id == call.state.call_id
    token = sent[0].url.rsplit("/", 1)[1]
    assert len(token) >= 40
    event = call.of("sms")[0]
    assert event["to"] == "+15*****0002"
    assert event["url"] == "https://ivr.example/v/" + token[:4] + "…"
    assert event["purpose"] == "documents"
    assert call.prompts()[0] == "I sent you a link."


async def test_sms_link_to_a_slot_number(tmp_path):
    flows = two_step_flows(tmp_path, """
        - set: {mobile: "+8613911112222"}
        - sms_link: {to: "{mobile}"}
        """)
    call = await run(flows, [])
    assert call.services.sms.sent[0].to == "+8613911112222"
    assert call.of("sms")[0]["to"] == "+86*******2222"
    assert call.of("sms")[0]["purpose"] == "visual"


async def test_sms_link_without_a_number_is_an_error_event(tmp_path):
    flows = two_step_flows(tmp_path, """
        - sms_link: {}
        - say: {en: "Carry on.", zh: "继续。"}
        """)
    call = await run(flows, [], caller=STRANGER)
    assert call.of("error") == [{"t": 0.0, "type": "error", "code": "sms-no-number",
                                 "message": "no mobile number on file"}]
    assert call.of("sms") == []
    assert call.services.sms.sent == []
    assert call.prompts()[0] == "Carry on."


# -- verify ------------------------------------------------------------------------------------

VERIFY = """
- verify: {{method: {method}, attempts: 2, on_fail: failed}}
- hangup: {{en: "Welcome back.", zh: "欢迎回来。"}}
- id: failed
  hangup: {{en: "Not verified.", zh: "未通过。"}}
"""


async def test_verify_success(tmp_path):
    call = await run(two_step_flows(tmp_path, VERIFY.format(method="dob")), [{"dtmf": "19850412"}],
                     caller=LI_WEI, lang="en")
    assert call.of("verified") == [{"t": call.of("verified")[0]["t"], "type": "verified",
                                    "method": "dob", "ok": True}]
    assert call.state.verified and call.state.verified_method == "dob"
    assert call.inputs() == [("dtmf", "****0412")]
    assert call.prompts()[1:] == ["You are verified.", "Welcome back."]


async def test_verify_by_speech(tmp_path):
    call = await run(two_step_flows(tmp_path, VERIFY.format(method="dob")),
                     [{"say": "one nine nine oh oh seven oh one"}], caller=EMMA)
    assert call.state.verified
    assert call.inputs() == [("speech", "[sensitive]")]
    assert "19900701" not in str(call.events)


async def test_verify_wrong_then_right(tmp_path):
    call = await run(two_step_flows(tmp_path, VERIFY.format(method="id_last4")),
                     [{"dtmf": "9999"}, {"dtmf": "1234"}], caller=LI_WEI, lang="en")
    assert call.prompts()[1:3] == ["That doesn't match.", call.prompts()[0]]
    assert call.of("verified")[0]["ok"] is True
    assert call.state.verified_method == "id_last4"
    assert call.prompts()[-1] == "Welcome back."


async def test_verify_fails_after_attempts(tmp_path):
    call = await run(two_step_flows(tmp_path, VERIFY.format(method="dob")),
                     [{"dtmf": "19850413"}, {"dtmf": "20990101"}, {"dtmf": "19850412"}], caller=LI_WEI, lang="en")
    assert [e["ok"] for e in call.of("verified")] == [False]
    assert not call.state.verified
    assert call.prompts()[-1] == "Not verified."
    assert len(call.inputs()) == 2


async def test_verify_unknown_caller_goes_to_on_fail(tmp_path):
    call = await run(two_step_flows(tmp_path, VERIFY.format(method="dob")), [{"dtmf": "19850412"}],
                     caller=STRANGER)
    assert call.of("verified")[0]["ok"] is False
    assert call.prompts() == ["Not verified."]
    assert call.inputs() == []


async def test_verify_is_skipped_once_verified(tmp_path):
    flows = two_step_flows(tmp_path, """
        - verify: {method: dob}
        - verify: {method: id_last4}
        - hangup: {en: "In.", zh: "进。"}
        """)
    call = await run(flows, [{"dtmf": "19850412"}], caller=LI_WEI)
    assert len(call.of("verified")) == 1
    assert call.prompts()[-1] == "In."


# -- transfer / emergency ----------------------------------------------------------------------

async def test_transfer_default_queue_and_context(tmp_path):
    flows = two_step_flows(tmp_path, """
        - set: {topic: billing}
        - transfer: {reason: wants-human}
        """)
    call = await run(flows, [], caller=EMMA)
    t = call.transfer()
    assert (t["queue"], t["reason"], t["context"]) == ("agents", "wants-human",
                                                      {"scene": "start", "verified": False})
    assert call.prompts() == ["Please hold for an agent."]
    assert call.channel.transferred_to == "agents"
    ctx = call.channel.transfer_context
    assert ctx["slots"] == {"topic": "billing"}
    assert (ctx["call_id"], ctx["scene"], ctx["lang"], ctx["scenes"]) == (call.state.call_id, "start", "en", ["start"])
    assert (call.state.outcome, call.state.transfer_reason) == ("transferred", "wants-human")
    assert call.hangup() is None


async def test_transfer_explicit_queue_and_prompt(tmp_path):
    flows = two_step_flows(tmp_path, """
        - transfer:
            queue: claims
            reason: claim-help
            say: {en: "Connecting you to claims.", zh: "正在转接理赔。"}
        """)
    call = await run(flows, [], lang="zh")
    assert (call.transfer()["queue"], call.prompts()) == ("claims", ["正在转接理赔。"])


async def test_emergency(tmp_path):
    flows = two_step_flows(tmp_path, """
        - emergency:
            kind: accident
            say: {en: "Connecting you to emergency help.", zh: "正在转接紧急救援。"}
        """)
    call = await run(flows, [])
    assert call.types()[-3:] == ["emergency", "prompt", "transfer"]
    assert call.of("emergency")[0] == {"t": 0.0, "type": "emergency", "kind": "accident", "reason": "emergency"}
    t = call.transfer()
    assert (t["queue"], t["reason"]) == ("emergency", "emergency")
    assert t["context"] == {"scene": "start", "verified": False, "priority": "high", "emergency": "accident"}
    assert call.channel.transfer_context["priority"] == "high"
    assert call.state.outcome == "transferred"


# -- goto / hangup -----------------------------------------------------------------------------

async def test_goto_step_scene_and_specials(tmp_path):
    flows = make_flows(tmp_path, {
        "start": scene("""
            - say: {en: "First.", zh: "第一。"}
              when: {lang: zh}
            - goto: later
              when: {lang: en}
            - id: skipped
              say: {en: "Never.", zh: "从不。"}
            - id: later
              say: {en: "Later.", zh: "稍后。"}
            - goto: other
            """),
        "other": """
            id: other
            title: {en: Other, zh: 其他}
            steps:
              - say: {en: "Other.", zh: "其他。"}
              - goto: menu
            """,
    })
    call = await run(flows, [])
    assert call.prompts() == ["Later.", "Other.", "Menu reached."]
    assert call.scenes() == ["start", "other", "menu"]
    assert call.steps() == ["start.step2", "start.later", "start.step5", "other.step1", "other.step2",
                            "menu.step1"]


@pytest.mark.parametrize("target,expect", [
    ("agent", ("transfer", "agents")), ("hangup", ("hangup", "ivr")), ("end", ("hangup", "ivr")),
    ("menu", ("hangup", "ivr")), ("start", ("loop", None)),
])
async def test_goto_special_targets(tmp_path, target, expect):
    flows = two_step_flows(tmp_path, f"- say: {{en: Hi., zh: 你好。}}\n- goto: {target}\n")
    call = await run(flows, [])
    if expect[0] == "transfer":
        assert call.transfer()["queue"] == "agents" and call.prompts() == ["Hi."]
    elif expect[0] == "hangup":
        assert call.hangup() == "ivr"
        assert call.errors() == []
        assert call.state.outcome == "resolved"
        if target == "menu":
            assert call.prompts() == ["Hi.", "Menu reached."]
    else:  # goto the scene itself re-enters it, until the loop guard hands over
        assert call.errors() == ["flow-loop"]
        assert call.scenes().count("start") == 200


async def test_end_goes_to_the_hotline_scene_end(tmp_path):
    flows = make_flows(tmp_path, {
        "start": scene("- say: {en: Hi., zh: 你好。}\n- goto: end\n"),
        "wrap": """
            id: wrap
            title: {en: Wrap, zh: 结束}
            steps:
              - hangup: {en: "Wrapped.", zh: "结束。"}
            """}, on_scene_end="wrap")
    call = await run(flows, [])
    assert call.prompts() == ["Hi.", "Wrapped."]
    assert call.scenes() == ["start", "wrap"]


async def test_running_off_the_end_of_a_scene_resolves(tmp_path):
    flows = make_flows(tmp_path, {
        "start": scene("- say: {en: Hi., zh: 你好。}\n"),
        "wrap": """
            id: wrap
            title: {en: Wrap, zh: 结束}
            steps:
              - ask: {slot: x, say: {en: "Anything?", zh: "还有吗？"}}
            """}, on_scene_end="wrap")
    call = await run(flows, [])  # the caller hangs up at "Anything?"
    assert call.scenes() == ["start", "wrap"]
    assert call.state.outcome == "resolved"
    assert call.hangup() == "caller"


async def test_hangup_default_and_custom(tmp_path):
    call = await run(two_step_flows(tmp_path, "- hangup: {}\n"), [])
    assert call.prompts() == ["Goodbye."]
    assert call.of("hangup")[0] == {"t": 0.4, "type": "hangup", "by": "ivr"}
    assert call.channel.hung_up and call.state.outcome == "resolved"
    call = await run(two_step_flows(tmp_path, "- hangup: {en: Bye now., zh: 再会。}\n"), [], lang="zh")
    assert call.prompts() == ["再会。"]
    assert call.types()[-1] == "hangup"


def test_every_step_type_is_covered():
    from ivr.flow.registry import step_types

    covered = {"say", "menu", "ask", "confirm", "branch", "set", "lookup", "proactive", "sms_link",
               "verify", "transfer", "emergency", "goto", "hangup"}
    assert set(step_types()) == covered


def test_dataclasses_used_by_the_kit_are_frozen():
    # sanity: the kit's Action is the simulator's
    from ivr.sim import Action

    with pytest.raises(dataclasses.FrozenInstanceError):
        Action("dtmf", "1").kind = "say"  # type: ignore[misc]
    assert SimChannel([]).clock() == 0.0
