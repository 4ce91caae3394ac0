"""Helpers for the engine unit tests: build small flow sets and run scripted calls.

    flows = make_flows(tmp_path, {"start": START_YAML})
    call = await run(flows, [{"dtmf": "1"}, {"say": "yes"}])
    assert call.types() == [...]
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from ivr.data.directory import MemoryDirectory
from ivr.flow.channel import CallerInput, PromptOut
from ivr.flow.engine import CallRunner
from ivr.flow.loader import load_flows
from ivr.flow.model import FlowSet
from ivr.flow.state import CallState
from ivr.nlu.router import IntentRouter
from ivr.services import BusinessCalendar, CallServices, MemoryOutbox, StaticFlags
from ivr.sim import Action, SimChannel

ROOT = Path(__file__).resolve().parents[2]
QUEUES = str(ROOT / "dialplans" / "queues.conf")
FIXTURE_FLOWS = ROOT / "tests" / "fixtures" / "unit_flows"
TODAY = date(2026, 12, 1)
# Tuesday 2026-12-01 10:00 local: inside the business hours below.
OPEN_AT = datetime(2026, 12, 1, 10, 0)
HOURS = {d: "08:00-20:00" for d in ("mon", "tue", "wed", "thu", "fri")}

# Caller ids of the demo customers (ivr/data/demo_customers.jsonl).
LI_WEI = "+8613800000001"  # zh, open claim 20261101, card 4321, DOB 1985-04-12
EMMA = "+15550100002"  # en, approved claim 20261102, DOB 1990-07-01
STRANGER = "+15559999999"  # not in the directory

HOTLINE = """\
hotline:
  entry: start
  menu: menu
  languages: [en, zh]
  default_language: en
  agent_queue: agents
  emergency_queue: emergency
  on_scene_end: {on_scene_end}
  timeouts: {{first_input: 6, interdigit: 4, speech: 10}}
  escapes:
    - name: agent
      dtmf: "0"
      then: agent
      words:
        en: [agent, operator, human, "real person"]
        zh: [人工, 转人工, 客服]
    - name: repeat
      dtmf: "*"
      then: repeat
      words:
        en: [repeat, "say that again"]
        zh: [重复, 再说一遍]
  no_input: {{retry: 2, then: agent}}
  no_match: {{retry: 2, then: agent}}
  texts:
    no_input: {{en: "Sorry, I didn't hear anything.", zh: "抱歉，没有听到您的声音。"}}
    no_match: {{en: "Sorry, I didn't catch that.", zh: "抱歉，没有听清楚。"}}
    transfer: {{en: "Please hold for an agent.", zh: "正在为您转接人工服务。"}}
    goodbye: {{en: "Goodbye.", zh: "再见。"}}
    technical_problem: {{en: "Sorry, a technical problem. Connecting you.", zh: "抱歉，系统故障，正在转接。"}}
    verified: {{en: "You are verified.", zh: "验证通过。"}}
    verify_failed: {{en: "That doesn't match.", zh: "不符。"}}
"""

MENU_SCENE = """\
id: menu
title: {en: Menu, zh: 菜单}
steps:
  - hangup: {en: "Menu reached.", zh: "到达菜单。"}
"""


def make_flows(tmp_path: Path, scenes: dict[str, str], *, on_scene_end: str = "hangup",
               hotline: str | None = None) -> FlowSet:
    """Write a hotline file plus the given scenes (name -> YAML) and load them; fail on any problem.

    A `menu` scene that just hangs up is added unless one is given."""
    folder = tmp_path / "flows"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hotline.yaml").write_text(hotline or HOTLINE.format(on_scene_end=on_scene_end),
                                         encoding="utf-8")
    scenes = dict(scenes)
    scenes.setdefault("menu", MENU_SCENE)
    for name, text in scenes.items():
        (folder / f"{name}.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    result = load_flows([str(folder)], queues_conf=QUEUES)
    assert result.flowset is not None, "\n".join(str(p) for p in result.problems)
    return result.flowset


def fixture_flows() -> FlowSet:
    result = load_flows([str(FIXTURE_FLOWS)], queues_conf=QUEUES)
    assert result.flowset is not None, "\n".join(str(p) for p in result.problems)
    return result.flowset


def _dedent_chunks(text: str) -> str:
    """Dedent pieces of YAML glued together with different indents (an indented block + a
    column-0 constant): a line indented less than the current piece starts a new piece."""
    out, base = [], None
    for line in text.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        if base is None or indent < base:
            base = indent
        out.append(line[base:])
    return "\n".join(out)


def scene(steps: str, sid: str = "start", extra: str = "") -> str:
    """A scene's YAML from its steps list."""
    body = textwrap.indent(_dedent_chunks(steps), "  ")
    return f"id: {sid}\ntitle: {{en: {sid}, zh: {sid}}}\n{extra}steps:\n{body}\n"


def services(*, flags: dict | None = None, at: datetime = OPEN_AT, router: Any = "none",
             country: str = "CN", extra_holidays: tuple = (), directory: Any = None) -> CallServices:
    return CallServices(
        directory=directory or MemoryDirectory.from_jsonl(today=TODAY),
        flags=StaticFlags(flags or {}),
        calendar=BusinessCalendar(HOURS, "Asia/Shanghai", country, extra_holidays, now=lambda: at),
        sms=MemoryOutbox("https://ivr.example"),
        router=IntentRouter(None) if router == "none" else router,
    )


def actions(items: list) -> list[Action]:
    out = []
    for item in items:
        if isinstance(item, Action):
            out.append(item)
            continue
        ((kind, value),) = item.items()
        if kind == "silence":
            value = float(value)
        out.append(Action(kind, value))
    return out


class BargeChannel(SimChannel):
    """A SimChannel whose caller presses keys over prompts that allow barge-in: a pending `dtmf`
    action cuts the prompt short (after its first word) and is returned by play()."""

    async def play(self, prompt: PromptOut) -> CallerInput | None:
        if prompt.barge_in and self._actions and self._actions[0].kind == "dtmf":
            action = self._actions.pop(0)
            self.t += 0.4 + 0.3 * len(action.value)
            return CallerInput("dtmf", action.value)
        return await super().play(prompt)


@dataclass
class Call:
    state: CallState
    events: list[dict]
    channel: SimChannel
    runner: CallRunner
    services: CallServices
    raw: list = field(default_factory=list)

    def of(self, kind: str, **match: Any) -> list[dict]:
        return [e for e in self.events if e["type"] == kind
                and all(e.get(k) == v for k, v in match.items())]

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def prompts(self) -> list[str]:
        return [e["text"] for e in self.of("prompt")]

    def errors(self) -> list[str]:
        return [e["code"] for e in self.of("error")]

    def scenes(self) -> list[str]:
        return [e["id"] for e in self.of("scene")]

    def steps(self) -> list[str]:
        return [f"{e['scene']}.{e['id']}" for e in self.of("step")]

    def inputs(self) -> list[tuple[str, str]]:
        return [(e["kind"], e["value"]) for e in self.of("input")]

    def transfer(self) -> dict | None:
        found = self.of("transfer")
        return found[-1] if found else None

    def hangup(self) -> str | None:
        found = self.of("hangup")
        return found[-1]["by"] if found else None


async def run(flows: FlowSet, script: list, *, caller: str = "", lang: str | None = "en",
              svc: CallServices | None = None, channel: SimChannel | None = None,
              state: CallState | None = None, **service_kw: Any) -> Call:
    """Run one call with scripted caller actions ({"dtmf": "1"}, {"say": "..."}, {"silence": 7}...)."""
    svc = svc or services(**service_kw)
    chan = channel or SimChannel(actions(script))
    runner = CallRunner(flows, chan, svc, caller=caller, lang=lang, state=state)
    final = await runner.run()
    history = runner.stream.history
    return Call(final, [e.to_dict() for e in history], chan, runner, svc, list(history))
