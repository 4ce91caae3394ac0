"""The phone-free simulator: a scripted caller drives the same engine as real calls.

Time is simulated: a prompt advances it by its spoken length (150 words a minute when TTS is
off), a key press by 0.3 s, speech by its spoken length and `silence: N` by N seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ivr import events as ev
from ivr.errors import CallerHangup, ScriptError
from ivr.flow import conditions
from ivr.flow.channel import TIMEOUT, CallerInput, ListenSpec, PromptOut
from ivr.flow.engine import CallRunner
from ivr.flow.model import FlowSet
from ivr.flow.prompts import spoken_seconds
from ivr.flow.state import CallState
from ivr.services import CallServices
from ivr.yamlsafe import Document, YamlProblem, load_file

KEY_SECONDS = 0.3
TAP_SECONDS = 0.5
ACTIONS = ("dtmf", "say", "silence", "click", "hangup")
SCRIPT_KEYS = ("caller", "lang", "at", "flags", "actions", "expect", "description")
EXPECT_KEYS = ("scene", "scenes", "not_scenes", "transfer", "outcome", "slots", "events", "max_t", "hangup")


@dataclass(frozen=True)
class Action:
    kind: str
    value: Any


@dataclass
class Script:
    path: str
    actions: list[Action]
    caller: str | None = None
    lang: str | None = None
    at: str | None = None
    flags: dict[str, str] = field(default_factory=dict)
    expect: dict[str, Any] = field(default_factory=dict)


def parse_script(path: str) -> Script:
    try:
        doc = load_file(path)
    except YamlProblem as exc:
        raise ScriptError(str(exc.problem)) from None
    data = doc.data
    meta: dict[str, Any] = {}
    if isinstance(data, dict):
        for key in data:
            if key not in SCRIPT_KEYS:
                raise ScriptError(_where(doc, (key,), key=True) + f"unknown key {key!r} (known: {', '.join(SCRIPT_KEYS)})")
        meta, data, base = data, data.get("actions", []), ("actions",)
    else:
        base = ()
    if not isinstance(data, list):
        raise ScriptError(_where(doc, base) + "a script is a list of caller actions such as - dtmf: \"1\"")
    actions = []
    for i, item in enumerate(data):
        where = _where(doc, base + (i,))
        if not isinstance(item, dict) or len(item) != 1 or next(iter(item)) not in ACTIONS:
            raise ScriptError(where + f"each action is one of: {', '.join(ACTIONS)}")
        kind, value = next(iter(item.items()))
        if kind == "dtmf":
            value = str(value)
            if not all(c in "0123456789*#ABCD" for c in value):
                raise ScriptError(where + "dtmf keys are 0-9 * # A-D")
        elif kind == "silence":
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 600:
                raise ScriptError(where + "silence is a number of seconds (0..600)")
            value = float(value)
        elif kind in ("say", "click"):
            value = "" if value is None else str(value)
        actions.append(Action(kind, value))
    expect = meta.get("expect") or {}
    if not isinstance(expect, dict) or any(k not in EXPECT_KEYS for k in expect):
        raise ScriptError(_where(doc, ("expect",)) + f"expect takes: {', '.join(EXPECT_KEYS)}")
    flags = meta.get("flags") or {}
    return Script(path, actions, _opt(meta.get("caller")), _opt(meta.get("lang")), _opt(meta.get("at")),
                  {str(k): str(v) for k, v in flags.items()} if isinstance(flags, dict) else {}, expect)


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def _where(doc: Document, path: tuple, *, key: bool = False) -> str:
    line, col = doc.mark(path, key=key)
    return f"{doc.path}:{line}:{col}: "  # ScriptError adds its code in front: no second one


class SimChannel:
    """A Channel whose caller follows a script, in simulated time."""

    def __init__(self, actions: list[Action], hear=None) -> None:
        self._actions = list(actions)
        self._hear = hear  # with `--audio`: (text, lang, hints) -> Transcript, through TTS and ASR
        self._silence_left: float | None = None
        self._injected: list[CallerInput] = []
        self.t = 0.0
        self.transferred_to: str | None = None
        self.transfer_context: dict | None = None
        self.hung_up = False

    def clock(self) -> float:
        return self.t

    async def play(self, prompt: PromptOut) -> CallerInput | None:
        self.t += spoken_seconds(prompt.text)
        return None

    def inject(self, inp: CallerInput) -> None:
        """An input from outside the script (a visual page driving a simulated call)."""
        self._injected.append(inp)

    async def listen(self, spec: ListenSpec) -> CallerInput:
        if self._injected:
            return self._injected.pop(0)
        while True:
            if not self._actions:
                raise CallerHangup()  # the script is over: the caller hangs up
            action = self._actions[0]
            if action.kind == "hangup":
                raise CallerHangup()
            if action.kind == "silence":
                left = action.value if self._silence_left is None else self._silence_left
                if left >= spec.timeout:
                    self.t += spec.timeout
                    self._silence_left = left - spec.timeout
                    if self._silence_left <= 0:
                        self._pop()
                    return TIMEOUT
                self.t += left
                self._pop()
                continue
            accepted = {"dtmf": spec.dtmf, "say": spec.speech, "click": True}[action.kind]
            if not accepted:  # e.g. speech on a keypad-only step: the IVR hears nothing it listens
                self._pop()  # for, and the caller's next action comes after the timeout
                self.t += spec.timeout
                return TIMEOUT
            self._pop()
            if action.kind == "dtmf":
                self.t += KEY_SECONDS * len(action.value)
                return CallerInput("dtmf", action.value)
            if action.kind == "say":
                self.t += spoken_seconds(action.value)
                if self._hear is not None:
                    heard = await self._hear(action.value, spec.lang or "en", spec.hints, spec.detect)
                    return CallerInput("speech", heard.text, heard.confidence, heard.lang)
                return CallerInput("speech", action.value, 1.0)
            self.t += TAP_SECONDS
            return CallerInput("click", action.value)

    def _pop(self) -> None:
        self._actions.pop(0)
        self._silence_left = None

    async def transfer(self, queue: str, context: dict) -> None:
        self.transferred_to, self.transfer_context = queue, context

    async def hangup(self) -> None:
        self.hung_up = True


@dataclass
class SimResult:
    script: Script
    state: CallState
    events: list[ev.Event]
    failures: list[str]

    @property
    def ok(self) -> bool:
        return not self.failures


async def simulate(flows: FlowSet, services: CallServices, script: Script, *, caller: str = "",
                   lang: str | None = None, recorder=None, hear=None, recorders=()) -> SimResult:
    """`recorder` (e.g. an ivr.store.CallStore) and each of `recorders` (the HistoryStore) get
    attach(stream, state) before the call and finish(call_id, state) after it. `hear` passes
    the caller's words through TTS and ASR."""
    channel = SimChannel(script.actions, hear)
    runner = CallRunner(flows, channel, services, caller=script.caller or caller, lang=script.lang or lang)
    recorders = [r for r in (recorder, *recorders) if r is not None]
    for r in recorders:
        r.attach(runner.stream, runner.state)
    try:
        state = await runner.run()
    finally:
        for r in recorders:
            r.finish(runner.state.call_id, runner.state)
    events = runner.stream.history
    return SimResult(script, state, events, check_expectations(script.expect, state, events))


def check_expectations(expect: dict[str, Any], state: CallState, events: list[ev.Event]) -> list[str]:
    failures: list[str] = []
    scenes = [e.id for e in events if isinstance(e, ev.Scene)]
    transfers = [e for e in events if isinstance(e, ev.Transfer)]
    if "scene" in expect and (not scenes or scenes[-1] != expect["scene"]):
        failures.append(f"expected to end in scene {expect['scene']!r}, ended in {scenes[-1] if scenes else None!r}")
    if "scenes" in expect:
        it = iter(scenes)
        if not all(s in it for s in expect["scenes"]):
            failures.append(f"expected scenes {expect['scenes']} in order, visited {scenes}")
    for s in expect.get("not_scenes") or []:
        if s in scenes:
            failures.append(f"expected never to visit {s!r}")
    if "transfer" in expect:
        want = expect["transfer"]
        got = transfers[-1].queue if transfers else False
        if want is True and not transfers or want is not True and got != want:
            failures.append(f"expected transfer {want!r}, got {got!r}")
    if "outcome" in expect and state.outcome != expect["outcome"]:
        failures.append(f"expected outcome {expect['outcome']!r}, got {state.outcome!r}")
    if "hangup" in expect:
        hangups = [e.by for e in events if isinstance(e, ev.Hangup)]
        if (hangups[-1] if hangups else None) != expect["hangup"]:
            failures.append(f"expected hangup by {expect['hangup']!r}, got {hangups}")
    for name, value in (expect.get("slots") or {}).items():
        got = conditions._dig(state.slots, str(name))  # dotted, like {bill.balance} in prompts
        if str(got) != str(value):
            failures.append(f"expected slot {name}={value!r}, got {got!r}")
    if "max_t" in expect and events and events[-1].t > float(expect["max_t"]):
        failures.append(f"expected the call to last at most {expect['max_t']} s, it lasted {events[-1].t}")
    pending = list(expect.get("events") or [])
    for event in events:
        if pending and _matches(event.to_dict(), pending[0]):
            pending.pop(0)
    if pending:
        failures.append(f"expected event {pending[0]} (and {len(pending) - 1} after it) did not happen")
    return failures


def _matches(data: dict[str, Any], want: Any) -> bool:
    if not isinstance(want, dict):
        return False
    for key, value in want.items():
        got = data.get(key)
        if isinstance(value, str) and isinstance(got, str) and key == "text":
            if value.lower() not in got.lower():
                return False
        elif str(got) != str(value) and got != value:
            return False
    return True
