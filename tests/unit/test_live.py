"""The visual page's way into a live call (ivr.live): taps, keypad entries and verification
reach the engine as the caller's next input, through a channel that waits in real time."""

from __future__ import annotations

import asyncio

from ivr import events as ev
from ivr.app import build_services, flow_repository
from ivr.config import load_config
from ivr.errors import CallerHangup
from ivr.flow.channel import TIMEOUT, CallerInput, ListenSpec, PromptOut
from ivr.flow.engine import CallRunner
from ivr.live import LiveCalls
from ivr.nlu.router import IntentRouter

OLIVIA = "+15550100005"  # en, nothing pending: the plain menu; DOB 1988-12-24


class WaitingChannel:
    """Prompts take no time; listen() waits (really) for an injected input."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[CallerInput] = asyncio.Queue()
        self.prompts: list[str] = []

    def clock(self) -> float:
        return 0.0

    def inject(self, inp: CallerInput) -> None:
        self.queue.put_nowait(inp)

    async def play(self, prompt: PromptOut) -> CallerInput | None:
        self.prompts.append(prompt.text)
        return None

    async def listen(self, spec: ListenSpec) -> CallerInput:
        try:
            async with asyncio.timeout(min(spec.timeout, 3.0)):
                inp = await self.queue.get()
        except TimeoutError:
            return TIMEOUT
        if inp.value == "hangup":
            raise CallerHangup()
        return inp

    async def transfer(self, queue: str, context: dict) -> None:
        pass

    async def hangup(self) -> None:
        pass


async def start(caller: str):
    config = load_config(None)
    flows = flow_repository(config).load()
    channel = WaitingChannel()
    runner = CallRunner(flows, channel, build_services(config, router=IntentRouter(None)), caller=caller)
    active = {runner.state.call_id: runner}
    task = asyncio.create_task(runner.run())
    return runner, channel, LiveCalls(active).get(runner.state.call_id), task


async def next_choices(runner, step: str, timeout: float = 3.0) -> ev.Choices:
    async with asyncio.timeout(timeout):
        while True:
            found = [e for e in runner.stream.history if isinstance(e, ev.Choices) and e.step == step]
            if found:
                return found[-1]
            await asyncio.sleep(0.01)


async def test_a_tap_chooses_the_option_and_the_call_says_so():
    runner, channel, call, task = await start(OLIVIA)
    choices = await next_choices(runner, "main_menu.choose")
    assert {"value": "3", "label": "credit cards"} in choices.to_dict()["items"]
    assert call.tap("3")
    await next_choices(runner, "cards_menu.choose")
    assert "You chose credit cards." in channel.prompts
    taps = [e for e in runner.stream.history if isinstance(e, ev.Input) and e.kind == "click"]
    assert taps and taps[0].value == "3"
    assert not call.tap("<script>") and not call.enter_keys("12a")  # refused before the call
    channel.inject(CallerInput("click", "hangup"))
    await asyncio.wait_for(task, 5)


async def test_keypad_entry_and_page_verification_reach_the_call():
    runner, channel, call, task = await start(OLIVIA)
    await next_choices(runner, "main_menu.choose")
    call.tap("3")
    await next_choices(runner, "cards_menu.choose")
    call.tap("1")  # card bill: verification first
    entry = await next_choices(runner, "card_bill.verify")  # the scene's implicit verification
    assert entry.entry == {"slot": "dob", "length": 8, "sensitive": True}
    call.mark_verified("dob")
    async with asyncio.timeout(3):
        while "Thank you, you are verified." not in channel.prompts:
            await asyncio.sleep(0.01)
    assert runner.state.verified and runner.state.verified_method == "web-dob"
    assert [e.method for e in runner.stream.history if isinstance(e, ev.Verified)] == ["web-dob"]
    await next_choices(runner, "card_bill.report")  # the bill, and its yes/no question
    assert any("balance of 80.25" in p for p in channel.prompts)
    channel.inject(CallerInput("click", "hangup"))
    await asyncio.wait_for(task, 5)


class TapOverPromptChannel(WaitingChannel):
    """Like a real line: an input injected while a prompt plays stops it and is its answer."""

    def __init__(self) -> None:
        super().__init__()
        self.over: dict[str, CallerInput] = {}  # prompt text -> input that lands while it plays

    async def play(self, prompt: PromptOut) -> CallerInput | None:
        self.prompts.append(prompt.text)
        landed = self.over.pop(prompt.text, None)
        return landed if landed is not None and prompt.barge_in else None


async def test_a_tap_over_the_verified_prompt_is_not_lost():
    runner = channel = None
    config = load_config(None)
    flows = flow_repository(config).load()
    channel = TapOverPromptChannel()
    runner = CallRunner(flows, channel, build_services(config, router=IntentRouter(None)), caller=OLIVIA)
    call = LiveCalls({runner.state.call_id: runner}).get(runner.state.call_id)
    task = asyncio.create_task(runner.run())
    await next_choices(runner, "main_menu.choose")
    # the caller taps "credit cards" while the call is still saying they are verified
    channel.over["Thank you, you are verified."] = CallerInput("click", "3")
    call.mark_verified("dob")
    await next_choices(runner, "cards_menu.choose")
    assert "You chose credit cards." in channel.prompts
    channel.inject(CallerInput("click", "hangup"))
    await asyncio.wait_for(task, 5)
