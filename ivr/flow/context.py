"""What a step handler works with: prompts, input collection with retries and escapes, slots,
and the call's event stream. Steps never see the transport behind the Channel."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, replace
from typing import Any, Awaitable, Callable, TypeVar

from ivr import events as ev
from ivr.flow import conditions
from ivr.flow.channel import TIMEOUT, CallerInput, Channel, ListenSpec, PromptOut
from ivr.flow.model import Escape, FlowSet, RetryPolicy, SceneDef, StepDef
from ivr.flow.prompts import render
from ivr.flow.state import CallState
from ivr.privacy import clean_text, mask_cards, mask_digits
from ivr.services import CallServices

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")
MAX_KEYS = 64  # a longer keypad entry is cut here and treated as no-match
MAX_REPEATS = 3
ESCAPE_WORDS = 8  # longest utterance in which "agent"/"repeat" counts as an escape
ROUTED_ESCAPE_WORDS = 5  # where free speech is routed to scenes: the router knows "agent" too
TEXT_ESCAPE_WORDS = 3  # where speech is kept as text (an address may say "customer service")
VERIFIED_TAP = "@verified"  # the input the visual page sends when the caller verified there
YES_NO = {"yes": {"en": "Yes", "zh": "是"}, "no": {"en": "No", "zh": "不是"}}
_WORDS = re.compile(r"[\w']+")


class Jump(Exception):
    """Leave the current step for a target: a step id, a scene id, or a special target."""

    def __init__(self, target: str, reason: str = "") -> None:
        super().__init__(target)
        self.target = target
        self.reason = reason


@dataclass
class Reply:
    input: CallerInput
    value: Any


class StepContext:
    def __init__(self, flows: FlowSet, channel: Channel, services: CallServices, state: CallState,
                 stream: ev.EventStream, profile: dict[str, Any] | None) -> None:
        self.flows = flows
        self.channel = channel
        self.services = services
        self.state = state
        self.stream = stream
        self.profile = profile or {}
        self.scene: SceneDef | None = None
        self.step: StepDef | None = None
        self.verifying = False  # a verify step is asking for the second factor
        self.pending_tap: CallerInput | None = None  # a tap that cut a statement short
        self.typeahead = ""
        self.sensitive_slots: set[str] = set()

    # -- events -------------------------------------------------------------------------
    def publish(self, cls: type[ev.Event], **fields: Any) -> None:
        self.stream.publish(cls(t=self.channel.clock(), **fields))

    @property
    def lang(self) -> str:
        return self.state.lang

    def values(self) -> dict[str, Any]:
        """Everything a prompt may mention: slots, `profile.*` and admin flags (`flag.hotline.message`)."""
        return {**self.state.slots, "profile": self.profile, "caller": self.state.caller,
                "flag": _nest(self.services.flags.all() if hasattr(self.services.flags, "all") else {})}

    def set_slot(self, name: str, value: Any, *, sensitive: bool = False) -> None:
        if name == "lang" and value in self.flows.hotline.languages:
            self.state.lang = str(value)
        self.state.slots[name] = value
        if sensitive:
            self.sensitive_slots.add(name)
        shown = mask_digits(str(value)) if sensitive else mask_cards(str(value))
        self.publish(ev.Slot, name=name, value=shown)

    def scope(self) -> conditions.Scope:
        return conditions.Scope(
            slots=self.state.slots, profile=self.profile, flag=self.services.flags.get,
            calendar=self.services.calendar, verified=self.state.verified, lang=self.lang,
            known_caller=bool(self.profile))

    def text(self, name: str) -> dict[str, str]:
        return self.flows.hotline.texts.get(name) or {}

    def offer(self, items: list[dict] | None = None, entry: dict | None = None, *,
              step_id: str | None = None) -> None:
        """Tell the visual page what this step takes: buttons (value, label) or a keypad entry."""
        step_id = step_id or (self.step.id if self.step else "")
        where = f"{self.scene.id}.{step_id}" if self.scene and step_id else ""
        self.publish(ev.Choices, step=where, items=tuple(items or ()), entry=entry)

    def offer_yes_no(self) -> None:
        self.offer([{"value": "yes", "label": YES_NO["yes"].get(self.lang, "Yes")},
                    {"value": "no", "label": YES_NO["no"].get(self.lang, "No")}])

    # -- output -------------------------------------------------------------------------
    def render(self, text: dict[str, str] | None) -> str:
        return render(text, self.lang, self.values(), self.flows.hotline.default_language)

    async def say(self, text: dict[str, str] | None, *, barge_in: bool = True,
                  expect: ListenSpec | None = None) -> CallerInput | None:
        spoken = self.render(text)
        if not spoken:
            return None
        key = f"{self.scene.id}.{self.step.id}" if self.scene and self.step else ""
        audio = (text or {}).get("audio", {})
        out = PromptOut(spoken, self.lang, barge_in, audio.get(self.lang) if isinstance(audio, dict) else None, key,
                        expect)
        shown = spoken
        for name in self.sensitive_slots:  # a read-back ("the card ending 4321?") stays out of events
            value = str(self.state.slots.get(name) or "")
            if len(value) >= 4:
                shown = shown.replace(value, mask_digits(value))
        self.publish(ev.Prompt, text=shown, lang=self.lang, step=key)
        return await self.channel.play(out)

    async def say_ahead(self, text: dict[str, str] | None) -> None:
        """Say something the caller may cut short; keys pressed over it carry on to the next
        question (type-ahead), as they would over any other prompt."""
        barged = await self.say(text, barge_in=True)
        if barged is not None and barged.kind in ("dtmf", "click"):
            if barged.kind == "dtmf":
                self.typeahead += barged.value
            else:
                self.pending_tap = barged

    # -- input --------------------------------------------------------------------------
    async def _next(self, spec: ListenSpec) -> CallerInput:
        if self.pending_tap is not None:
            tap, self.pending_tap = self.pending_tap, None
            return tap
        if self.typeahead and spec.dtmf:
            keys, self.typeahead = self.typeahead[:MAX_KEYS], ""
            return CallerInput("dtmf", keys)
        return await self.channel.listen(self._expect(spec))

    def _expect(self, spec: ListenSpec) -> ListenSpec:
        """The spec as the transport needs it: the call's language, and, while that is only the
        hotline's default (an unknown caller), the languages to tell apart by ear."""
        languages = tuple(self.flows.hotline.languages)
        detect = languages if self.state.lang_source == "default" and len(languages) > 1 and spec.speech else ()
        return replace(spec, lang=spec.lang or self.lang, detect=spec.detect or detect)

    def _adopt_language(self, lang: str) -> None:
        """An unknown caller spoke another of the hotline's languages: serve them in it."""
        if lang and lang != self.lang and self.state.lang_source == "default" \
                and lang in self.flows.hotline.languages:
            self.set_slot("lang", lang)
            self.state.lang_source = "detected"

    async def _keys(self, first: str, spec: ListenSpec) -> CallerInput:
        """Apply the keypad convention: `*` deletes the last digit, `#` submits."""
        buffer: list[str] = []
        keys, pressed = first, 0
        interdigit = self.flows.hotline.timeouts.get("interdigit", 4.0)
        while True:
            for i, key in enumerate(keys):
                pressed += 1
                if key == "*":
                    if not buffer and pressed == 1:
                        self.typeahead = keys[i + 1:]
                        return CallerInput("dtmf", "*")
                    if buffer:
                        buffer.pop()
                elif key == "#":
                    self.typeahead = keys[i + 1:]
                    return CallerInput("dtmf", "".join(buffer) or "#")
                elif key.isdigit() or key in "ABCD":
                    if len(buffer) >= MAX_KEYS:  # a flood, not an entry: no validator or option
                        self.typeahead = ""  # takes the marked value, and the rest is dropped
                        return CallerInput("dtmf", "".join(buffer) + "…")
                    buffer.append(key)
                    if spec.max_keys and len(buffer) >= spec.max_keys:
                        self.typeahead = keys[i + 1:]
                        return CallerInput("dtmf", "".join(buffer))
            more = await self.channel.listen(ListenSpec(dtmf=True, speech=False, timeout=interdigit,
                                                        max_keys=spec.max_keys))
            if more.kind != "dtmf":
                return CallerInput("dtmf", "".join(buffer)) if more.kind == "timeout" else more
            keys = more.value

    def _escape(self, inp: CallerInput, option_keys: tuple[str, ...], word_limit: int) -> Escape | None:
        long_speech = inp.kind == "speech" and _word_count(inp.value) > word_limit
        for escape in self.flows.hotline.escapes:
            if inp.kind == "dtmf" and escape.dtmf and inp.value == escape.dtmf \
                    and inp.value not in option_keys:
                return escape
            if inp.kind == "speech" and not long_speech and _says_any(inp.value, escape.words, self.lang):
                return escape
            if inp.kind == "click" and inp.value == f"escape:{escape.name}":
                return escape
        return None

    async def gather(self, text: dict[str, str] | None, spec: ListenSpec, *,
                     option_keys: tuple[str, ...] = (), sensitive: bool = False,
                     lead: dict[str, str] | None = None, barge_in: bool = True,
                     escape_words: int = ESCAPE_WORDS) -> CallerInput:
        """Play a prompt, then take one input. Escapes ("agent"/0, "repeat") are handled here.

        A spoken escape counts only in an utterance of at most `escape_words` words, so "your
        agent hung up on me, I want to complain" is a complaint, not a request for an agent.
        Steps that route free speech (or take free text) pass a small limit."""
        repeats = 0
        while True:
            barged = None
            say_lead, say_text = lead, text
            if self.typeahead and spec.dtmf or self.pending_tap is not None:
                say_lead = say_text = None  # the caller already keyed or tapped ahead: don't make them listen
            expect = self._expect(spec)
            if say_lead:
                barged = await self.say(say_lead, barge_in=barge_in, expect=expect)
            if barged is None and say_text:
                barged = await self.say(say_text, barge_in=barge_in, expect=expect)
            lead = None
            inp = barged or await self._next(spec)
            while inp.kind == "dtmf" and not spec.dtmf:  # keys where only speech counts: ignore
                inp = await self._next(spec)
            if inp.kind == "dtmf":
                inp = await self._keys(inp.value, spec)
            if inp.kind == "speech":
                if not spec.speech:
                    inp = TIMEOUT
                else:
                    self._adopt_language(inp.lang)
                    inp = CallerInput("speech", clean_text(inp.value), inp.confidence)
            if inp.kind == "click" and inp.value == VERIFIED_TAP:  # verified on the visual page
                await self.say_ahead(self.text("verified"))  # a tap or key over it is the answer
                if self.verifying:
                    return inp  # the verify step sees state.verified and is done
                lead = None
                continue  # the current question again
            if inp.kind == "click":
                inp = CallerInput("click", clean_text(inp.value, 100))
            if inp.kind != "timeout":
                shown = mask_digits(inp.value) if sensitive and inp.kind == "dtmf" else mask_cards(inp.value)
                if sensitive and inp.kind == "speech":  # a spoken date of birth or card digits
                    shown = "[sensitive]"
                self.publish(ev.Input, kind=inp.kind, value=shown,
                             confidence=inp.confidence if inp.kind == "speech" else None)
            escape = self._escape(inp, option_keys, escape_words)
            if escape is None:
                return inp
            if escape.then == "repeat":
                repeats += 1
                if repeats > MAX_REPEATS:
                    raise Jump("agent", "repeat-limit")
                continue
            raise Jump(escape.then, f"caller-{escape.name}")

    async def collect(self, text: dict[str, str], spec: ListenSpec,
                      interpret: Callable[[CallerInput], Awaitable[T | None]], *,
                      option_keys: tuple[str, ...] = (), sensitive: bool = False,
                      escape_words: int = ESCAPE_WORDS) -> T:
        """gather() with the step's no-input and no-match policies: re-prompt, then escalate."""
        params = self.step.params if self.step else {}
        no_input = _policy(params.get("no_input"), self.flows.hotline.no_input)
        no_match = _policy(params.get("no_match"), self.flows.hotline.no_match)
        misses = {"no-input": 0, "no-match": 0}
        lead = None
        while True:
            inp = await self.gather(text, spec, option_keys=option_keys, sensitive=sensitive, lead=lead,
                                    escape_words=escape_words)
            if inp.kind != "timeout":
                result = await interpret(inp)
                if result is not None:
                    return result
            code, policy = ("no-input", no_input) if inp.kind == "timeout" else ("no-match", no_match)
            misses[code] += 1
            where = f"{self.scene.id}.{self.step.id}" if self.scene and self.step else ""
            self.publish(ev.Error, code=code, message=where)
            counter = f"{where}:{code}"
            self.state.counters[counter] = self.state.counters.get(counter, 0) + 1
            if misses[code] > policy.retry:
                raise Jump(policy.then, code)
            lead = policy.say or self.text(code.replace("-", "_"))

    async def transfer(self, queue: str, reason: str, extra: dict | None = None) -> None:
        """Hand the caller to a human with the whole context; the IVR's part of the call ends."""
        slots = {k: (mask_digits(str(v)) if k in self.sensitive_slots else v)
                 for k, v in self.state.slots.items() if not k.startswith("_")}
        context = {"call_id": self.state.call_id, "scene": self.state.scene, "slots": slots,
                   "verified": self.state.verified, "lang": self.lang,
                   "scenes": list(self.state.scenes), **(extra or {})}
        if self.state.escalation:  # came by escalation: the cause is the reason that counts
            reason = self.state.escalation
        self.state.outcome, self.state.transfer_reason = "transferred", reason
        context["reason"] = reason  # the channels set IVR_REASON from it for the dialplan
        self.publish(ev.Transfer, queue=queue, reason=reason,
                     context={"scene": self.state.scene, "verified": self.state.verified, **(extra or {})})
        await self.channel.transfer(queue, context)

    async def off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work (model inference) off the event loop."""
        return await asyncio.to_thread(fn, *args)


def _policy(step_policy: dict | None, default: RetryPolicy) -> RetryPolicy:
    if not step_policy:
        return default
    return RetryPolicy(step_policy.get("say", default.say), step_policy.get("retry", default.retry),
                       step_policy.get("then", default.then))


def _nest(flat: dict[str, str]) -> dict[str, Any]:
    """{"hotline.message": "x"} -> {"hotline": {"message": "x"}} for dotted placeholders."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            if not isinstance(node.get(parts[-1]), dict):
                node[parts[-1]] = value
    return out


def _word_count(text: str) -> int:
    """Words, counting two Chinese characters as one word."""
    cjk = sum(1 for ch in text if "\u3400" <= ch <= "\u9fff")
    return len(_WORDS.findall(re.sub(r"[\u3400-\u9fff]", " ", text))) + (cjk + 1) // 2


def _says_any(text: str, words: dict[str, tuple[str, ...]], lang: str) -> bool:
    low = text.lower()
    tokens = " " + " ".join(_WORDS.findall(low)) + " "
    for phrases in words.values():
        for phrase in phrases:
            p = phrase.lower()
            if p.isascii():
                if f" {' '.join(_WORDS.findall(p))} " in tokens:
                    return True
            elif p in low:
                return True
    return False
