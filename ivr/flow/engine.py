"""Runs one call through the scenes: resolve targets, run steps, publish events.

Pure asyncio; the transport is a Channel, the outside world is CallServices.
"""

from __future__ import annotations

import logging
from typing import Any

from ivr import events as ev
from ivr.errors import CallerHangup
from ivr.flow import conditions
from ivr.flow.channel import Channel
from ivr.flow.context import Jump, StepContext
from ivr.flow.model import FlowSet, SceneDef
from ivr.flow.registry import step_types
from ivr.flow.state import CallState
from ivr.privacy import mask_phone
from ivr.services import CallServices

_LOGGER = logging.getLogger(__name__)
MAX_STEPS = 400  # a call that runs this many steps is looping: hand it to a human


class CallRunner:
    """One call: an engine instance plus its event stream."""

    def __init__(self, flows: FlowSet, channel: Channel, services: CallServices, *, caller: str,
                 lang: str | None = None, state: CallState | None = None,
                 stream: ev.EventStream | None = None) -> None:
        self.flows = flows
        self.channel = channel
        self.services = services
        self.stream = stream or ev.EventStream()
        # the language is settled in run(): the given one if the hotline has it, else the profile's
        self.state = state or CallState(caller=caller, lang="", flow_version=flows.version)
        self._lang_given = lang
        self.ctx: StepContext | None = None

    async def run(self) -> CallState:
        hotline = self.flows.hotline
        profile = None
        try:
            profile = await self.services.directory.profile(self.state.caller) if self.state.caller else None
        except Exception:  # a broken directory must not stop the call
            _LOGGER.exception("profile lookup failed")
        if not self.state.lang:
            given = (self._lang_given, (profile or {}).get("lang"))
            self.state.lang = next((x for x in given if x in hotline.languages), hotline.default_language)
            self.state.lang_source = ("given" if self._lang_given in hotline.languages else
                                      "profile" if self.state.lang == (profile or {}).get("lang") else "default")
        ctx = self.ctx = StepContext(self.flows, self.channel, self.services, self.state, self.stream, profile)
        resuming = bool(self.state.scene)
        ctx.publish(ev.CallStart, caller=mask_phone(self.state.caller), flow_version=self.flows.version,
                    call_id=self.state.call_id, lang=self.state.lang)
        target = (f"{self.state.scene}:{self.state.step}" if resuming else hotline.entry)
        try:
            await self._drive(ctx, target)
        except CallerHangup:
            self.state.outcome = self.state.outcome or "hangup-caller"
            ctx.publish(ev.Hangup, by="caller")
        except Exception as exc:  # never dead air: apologise and reach a human
            _LOGGER.exception("call %s failed", self.state.call_id)
            ctx.publish(ev.Error, code="engine-failure", message=type(exc).__name__)
            await self._rescue(ctx)
        return self.state

    async def _rescue(self, ctx: StepContext) -> None:
        self.state.escalation = ""
        try:
            await ctx.say(ctx.text("technical_problem") or {"en": "Sorry, something went wrong. "
                                                              "Let me get you to an agent."},
                          barge_in=False)
            await ctx.transfer(self.flows.hotline.agent_queue, "engine-failure")
        except CallerHangup:
            ctx.publish(ev.Hangup, by="caller")
        except Exception:
            _LOGGER.exception("rescue transfer failed")

    def _resolve(self, scene: SceneDef | None, target: str, index: int) -> tuple[SceneDef | None, int]:
        """A target -> (scene, step index). (None, 0) means the call is over."""
        if ":" in target:  # resume form scene:step
            sid, step_id = target.split(":", 1)
            found = self.flows.scenes.get(sid)
            return (found, found.step_index(step_id) or 0) if found else (None, 0)
        if scene is not None:
            local = scene.step_index(target)
            if local is not None:
                return scene, local
        if target == "next":
            return scene, index + 1
        if target == "repeat":
            return scene, index
        if target == "menu":
            return self.flows.scenes[self.flows.hotline.menu], 0
        if target == "end":
            return self._resolve(scene, self.flows.hotline.on_scene_end, index)
        return self.flows.scenes.get(target), 0

    async def _drive(self, ctx: StepContext, target: str) -> None:
        types = step_types()
        scene: SceneDef | None = None
        index = 0
        budget = MAX_STEPS
        reason = ""
        while True:
            if target == "end":  # the same as running off the end of the scene
                target = self.flows.hotline.on_scene_end
                if self.state.outcome == "":
                    self.state.outcome = "resolved"
            if target == "agent":
                agent_scene = self.flows.hotline.agent_scene
                if not agent_scene or (scene is not None and scene.id == agent_scene):
                    await ctx.transfer(self.flows.hotline.agent_queue,
                                       self.state.escalation or reason or "escalation")
                    return
                # A Jump's reason (no-input, no-match, caller-agent...) is an escalation; a plain
                # `goto: agent` or menu option is the caller's choice: the scene's own reason counts.
                self.state.escalation = reason
                target = agent_scene
            if target == "hangup":
                await self._hangup(ctx)
                return
            new_scene, index = self._resolve(scene, target, index)
            if new_scene is None:
                raise RuntimeError(f"unresolvable target {target!r}")
            if new_scene is not scene and _switched_off(self.services.flags.get(f"scene.{new_scene.id}")):
                ctx.publish(ev.Error, code="scene-off", message=new_scene.id)
                await ctx.say(ctx.text("scene_off") or SCENE_OFF_TEXT, barge_in=False)
                menu = self.flows.hotline.menu
                target = menu if new_scene.id != menu else "agent"
                reason = "scene-off"
                continue
            if new_scene is not scene or (index == 0 and target == new_scene.id):
                scene = new_scene
                self._enter(ctx, scene)
                if "verified" in scene.requires and not self.state.verified and index == 0:
                    verify = types["verify"]
                    try:
                        await verify.run(ctx, _implicit_verify(scene))
                    except Jump as jump:
                        target, reason = jump.target, jump.reason
                        continue
            if index >= len(scene.steps):
                target = self.flows.hotline.on_scene_end
                if self.state.outcome == "":
                    self.state.outcome = "resolved"
                scene = None if target not in ("hangup", "agent") else scene
                continue
            step = scene.steps[index]
            budget -= 1
            if budget <= 0:
                ctx.publish(ev.Error, code="flow-loop", message=f"{scene.id}.{step.id}")
                target, reason = "agent", "flow-loop"
                continue
            if "when" in step.params and not conditions.evaluate(step.params["when"], ctx.scope()):
                target = "next"
                continue
            ctx.step = step
            self.state.step = step.id
            ctx.publish(ev.Step, scene=scene.id, id=step.id, kind=step.kind)
            try:
                result, reason = await types[step.kind].run(ctx, step), ""
            except Jump as jump:
                result, reason = jump.target, jump.reason
            target = result or "next"
            if self.state.outcome == "transferred":
                return

    def _enter(self, ctx: StepContext, scene: SceneDef) -> None:
        if scene.id != self.flows.hotline.agent_scene:
            self.state.escalation = ""  # left the agent scene (e.g. back to the menu): cause is stale
        ctx.scene = scene
        self.state.scene = scene.id
        self.state.scenes.append(scene.id)
        ctx.publish(ev.Scene, id=scene.id)

    async def _hangup(self, ctx: StepContext) -> None:
        self.state.outcome = self.state.outcome or "resolved"
        ctx.publish(ev.Hangup, by="ivr")
        await self.channel.hangup()


SCENE_OFF_TEXT = {"en": "Sorry, this service is not available right now.",
                  "zh": "抱歉，该服务暂时无法办理。"}


def _switched_off(value: str | None) -> bool:
    """An admin switched the scene off: `database put ivr scene.card_lost off`."""
    return value is not None and value.strip().lower() in ("off", "0", "false", "no", "disabled")


def _implicit_verify(scene: SceneDef) -> Any:
    from ivr.flow.model import StepDef

    return StepDef("verify", "verify", {"method": "dob", "attempts": 3, "on_fail": "agent"}, -1)
