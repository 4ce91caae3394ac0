"""Cross-file checks: dangling and unreachable steps, duplicate scenes and intents, unknown
lookups and queues that dialplans/queues.conf doesn't define."""

from __future__ import annotations

import logging
import os
import re

from ivr.errors import Problem
from ivr.flow.actions import data_actions
from ivr.flow.model import SPECIAL_TARGETS, Hotline
from ivr.flow.registry import step_types
from ivr.flow.schema import ParseContext

_LOGGER = logging.getLogger(__name__)


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def read_queues(path: str) -> tuple[set[str], list[Problem]]:
    """Queue names defined in an Asterisk queues.conf, read with pyst2's config parser."""
    import asterisk.config

    try:
        conf = asterisk.config.Config(path)
    except asterisk.config.ParseError as exc:
        line, message = exc.args if len(exc.args) == 2 else (1, str(exc))
        return set(), [Problem(path, int(line), 1, "dialplan-syntax", str(message))]
    except (OSError, UnicodeDecodeError) as exc:
        return set(), [Problem(path, 1, 1, "dialplan-unreadable", str(exc))]
    return {c.name for c in conf.categories if c.name != "general"}, []


def cross_check(hotline: Hotline, hotline_ctx: ParseContext | None, parsed: list,
                queues_conf: str | None = None, *, unloaded: set[str] | None = None) -> list[Problem]:
    """`unloaded`: None when every file parsed; else the scene ids seen in files that did not
    (references to them are not dangling, and reachability can't be judged)."""
    problems: list[Problem] = []
    types = step_types()
    actions = data_actions()
    scene_ids: dict[str, object] = {}
    for p in parsed:
        sid = p.scene.id
        if sid.startswith("?"):
            continue
        if sid in scene_ids:
            first = scene_ids[sid]
            problems.append(p.ctx.doc.problem(("id",), "flow-duplicate-scene",
                                              f"scene {sid!r} is already defined in {first.ctx.doc.path}"))
        else:
            scene_ids[sid] = p

    known = set(scene_ids) | (unloaded or set())  # scene ids a target may name

    def hotline_problem(key: str, code: str, message: str) -> None:
        if hotline_ctx is not None:
            problems.append(hotline_ctx.doc.problem(("hotline", key), code, message))
        else:
            problems.append(Problem("(hotline defaults)", 1, 1, code, message))

    for key in ("entry", "menu"):
        if getattr(hotline, key) not in known:
            hotline_problem(key, "flow-dangling-goto",
                            f"hotline {key} {getattr(hotline, key)!r} is not a scene")
    if hotline.agent_scene and hotline.agent_scene not in known:
        hotline_problem("agent_scene", "flow-dangling-goto",
                        f"agent_scene {hotline.agent_scene!r} is not a scene")
    if hotline.on_scene_end not in known and hotline.on_scene_end not in SPECIAL_TARGETS:
        hotline_problem("on_scene_end", "flow-dangling-goto",
                        f"on_scene_end {hotline.on_scene_end!r} is not a scene")
    if hotline_ctx is not None:
        for target, path in hotline_ctx.targets:
            if path[1:] in (("entry",), ("menu",), ("on_scene_end",), ("agent_scene",)):
                continue  # reported just above
            if target not in known and target not in SPECIAL_TARGETS:
                problems.append(hotline_ctx.doc.problem(path, "flow-dangling-goto",
                                                        f"{target!r} is not a scene"))

    targeted: set[str] = {hotline.entry, hotline.menu, hotline.on_scene_end, hotline.agent_scene}
    targeted |= {t for t, _ in (hotline_ctx.targets if hotline_ctx else [])}
    intent_owner: dict[tuple[str, str], tuple[str, object, tuple]] = {}
    for p in parsed:
        scene, ctx = p.scene, p.ctx
        step_ids: dict[str, int] = {}
        for step in scene.steps:
            if step.id in SPECIAL_TARGETS:
                problems.append(ctx.doc.problem(step.path + ("id",), "flow-bad-id",
                                                f"step id {step.id!r} is reserved"))
            elif step.id in step_ids:
                problems.append(ctx.doc.problem(step.path + ("id",), "flow-duplicate-step",
                                                f"step id {step.id!r} is used twice in this scene"))
            step_ids.setdefault(step.id, step.index)
            if step.kind == "lookup" and step.params.get("action") not in actions:
                problems.append(ctx.doc.problem(step.path + (step.kind, "action"), "flow-unknown-action",
                                                f"no data action named {step.params.get('action')!r} "
                                                f"(known: {', '.join(sorted(actions))})"))
        local_targets = set()
        for target, path in ctx.targets:
            if target in step_ids:
                local_targets.add(target)
            elif target in SPECIAL_TARGETS or target in known:
                targeted.add(target)
            else:
                problems.append(ctx.doc.problem(path, "flow-dangling-goto",
                                                f"{target!r} is neither a step of {scene.id!r}, a scene, "
                                                "nor one of " + "/".join(sorted(SPECIAL_TARGETS))))
        for step in scene.steps[1:]:
            prev = scene.steps[step.index - 1] if step.index - 1 < len(scene.steps) else None
            prev = next((s for s in scene.steps if s.index == step.index - 1), None)
            if prev is None or step.id in local_targets or "when" in prev.params:
                continue
            if types[prev.kind].is_terminal(prev.params):
                problems.append(ctx.doc.problem(step.path, "flow-unreachable-step",
                                                f"step {step.id!r} can never run: the step before it "
                                                f"({prev.kind}) never continues, and nothing jumps here"))
        for lang, phrases in scene.intents.items():
            for i, phrase in enumerate(phrases):
                key = (lang, _norm(phrase))
                owner = intent_owner.get(key)
                if owner and owner[0] != scene.id:
                    problems.append(ctx.doc.problem(("intents", lang, i), "flow-duplicate-intent",
                                                    f"{phrase!r} is also an intent of scene {owner[0]!r}"))
                else:
                    intent_owner[key] = (scene.id, ctx, ("intents", lang, i))

    for p in parsed:
        sid = p.scene.id
        if unloaded is None and sid in scene_ids and scene_ids[sid] is p and not p.scene.intents \
                and sid not in targeted:
            problems.append(p.ctx.doc.problem(("id",), "flow-unreachable-scene",
                                              f"scene {sid!r} has no intents and nothing goes to it"))

    if queues_conf is not None:
        problems += _check_queues(queues_conf, hotline_ctx, parsed)
    return problems


def _check_queues(queues_conf: str, hotline_ctx, parsed) -> list[Problem]:
    if not os.path.exists(queues_conf):
        return [Problem(queues_conf, 1, 1, "dialplan-missing", "queues.conf not found")]
    defined, problems = read_queues(queues_conf)
    if problems:
        return problems
    contexts = ([hotline_ctx] if hotline_ctx else []) + [p.ctx for p in parsed]
    for ctx in contexts:
        for queue, path in ctx.queues:
            if queue not in defined:
                problems.append(ctx.doc.problem(path, "flow-unknown-queue",
                                                f"queue {queue!r} is not defined in {queues_conf} "
                                                f"(defined: {', '.join(sorted(defined)) or 'none'})"))
    if hotline_ctx is None:
        from ivr.flow.model import Hotline as _H

        for queue in (_H.agent_queue, _H.emergency_queue):
            if queue not in defined:
                problems.append(Problem(queues_conf, 1, 1, "flow-unknown-queue",
                                        f"default queue {queue!r} is not defined"))
    return problems
