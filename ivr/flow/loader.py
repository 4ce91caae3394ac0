"""YAML files -> FlowSet, with every problem located as path:line:col.

A file holds either one scene (it has `id:`) or the hotline settings (it has `hotline:`).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.errors import Problem
from ivr.flow.model import Escape, FlowSet, Hotline, RetryPolicy, SceneDef, StepDef
from ivr.flow.registry import StepType, step_types
from ivr.flow.schema import MISSING, PARSERS, ParseContext, parse_text
from ivr.yamlsafe import Document, YamlProblem, decode, load_text

SCENE_KEYS = ("id", "title", "description", "intents", "keywords", "requires", "steps")
STEP_COMMON_KEYS = ("id", "type", "when")
_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_LOOSE_ID = re.compile(r"^id:[ \t]*[\"']?([a-z][a-z0-9_]{0,63})[\"']?[ \t]*(?:#.*)?$", re.M)
MAX_FILES = 5000


@dataclass
class ParsedScene:
    scene: SceneDef
    ctx: ParseContext
    steps_paths: dict[str, tuple] = field(default_factory=dict)


@dataclass
class LoadResult:
    flowset: FlowSet | None
    problems: list[Problem]
    parsed: list[ParsedScene] = field(default_factory=list)
    hotline_ctx: ParseContext | None = None


def discover(paths: list[str]) -> list[str]:
    files: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")) and d != "tests")
                files += [os.path.join(root, n) for n in sorted(names)
                          if n.endswith((".yaml", ".yml")) and not n.startswith(".")]
        else:
            files.append(p)
    return files[:MAX_FILES]


def load_flows(paths: list[str], *, queues_conf: str | None = None) -> LoadResult:
    """Parse and check every flow file under `paths`. The FlowSet is None when any error is found."""
    from ivr.flow.validate import cross_check

    problems: list[Problem] = []
    docs: list[tuple[Document, bytes]] = []
    unloaded: set[str] | None = None  # scene ids seen in files that failed to parse
    files = discover(paths)
    if not files:
        return LoadResult(None, [Problem(paths[0] if paths else ".", 1, 1, "flow-no-files",
                                         "no .yaml flow files found")])
    for path in files:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            problems.append(Problem(path, 1, 1, "file-unreadable", exc.strerror or str(exc)))
            continue
        try:
            doc = load_text(decode(raw, path), path)
        except YamlProblem as exc:
            problems.append(exc.problem)
            # its scenes may be what other files refer to: don't call those references dangling
            unloaded = (unloaded or set()) | set(_LOOSE_ID.findall(raw.decode("utf-8", "replace")))
            continue
        if not isinstance(doc.data, dict):
            kind = "empty" if doc.data is None else type(doc.data).__name__
            problems.append(Problem(path, 1, 1, "flow-bad-top-level",
                                    f"a flow file is a mapping (a scene or `hotline:`), not {kind}"))
            continue
        docs.append((doc, raw))

    manifests = [d for d, _ in docs if "hotline" in d.data]
    hotline, hotline_ctx = Hotline(), None
    if len(manifests) > 1:
        for doc in manifests[1:]:
            problems.append(doc.problem(("hotline",), "flow-duplicate-hotline",
                                        f"hotline settings are already in {manifests[0].path}", key=True))
    if manifests:
        hotline, hotline_ctx = parse_hotline(manifests[0])
        problems += hotline_ctx.problems

    parsed = [parse_scene(doc, hotline.languages) for doc, _ in docs if "hotline" not in doc.data]
    parsed = [p for p in parsed if p is not None]
    for p in parsed:
        problems += p.ctx.problems
    problems += cross_check(hotline, hotline_ctx, parsed, queues_conf, unloaded=unloaded)
    problems.sort(key=lambda p: (p.path, p.line, p.col))

    digest = hashlib.sha256()
    for doc, raw in sorted(docs, key=lambda d: d[0].path):
        digest.update(os.path.basename(doc.path).encode() + b"\0" + raw + b"\0")
    scenes = {p.scene.id: p.scene for p in parsed}
    flowset = None
    if not problems:
        flowset = FlowSet(digest.hexdigest()[:12], hotline, scenes, tuple(files))
    return LoadResult(flowset, problems, parsed, hotline_ctx)


def _words(value: Any, path: tuple, ctx: ParseContext) -> dict[str, tuple[str, ...]]:
    parsed = PARSERS["words"](value, path, ctx, None)
    return {} if parsed is MISSING else parsed


def parse_hotline(doc: Document) -> tuple[Hotline, ParseContext]:
    data = doc.data["hotline"]
    base = ("hotline",)
    langs = data.get("languages", ["en", "zh"]) if isinstance(data, dict) else ["en", "zh"]
    if not isinstance(langs, list) or not langs or not all(isinstance(x, str) and re.fullmatch(r"[a-z]{2,3}", x) for x in langs):
        langs = ["en", "zh"]
        ctx = ParseContext(doc, tuple(langs))
        ctx.error(base + ("languages",), "flow-bad-value", "languages is a list such as [en, zh]")
    else:
        ctx = ParseContext(doc, tuple(langs))
    for extra in doc.data:
        if extra != "hotline":
            ctx.error((extra,), "flow-unknown-key",
                      "a hotline file holds only `hotline:`; put scenes in their own files", key=True)
    if not isinstance(data, dict):
        ctx.error(base, "flow-bad-type", "hotline settings are a mapping")
        return Hotline(), ctx
    known = {"entry", "menu", "agent_scene", "languages", "default_language", "agent_queue", "emergency_queue",
             "on_scene_end", "escapes", "no_input", "no_match", "timeouts", "texts"}
    for key in data:
        if key not in known:
            ctx.error(base + (key,), "flow-unknown-key",
                      f"unknown hotline key {key!r} (known: {', '.join(sorted(known))})", key=True)
    kwargs: dict[str, Any] = {"languages": tuple(langs), "file": doc.path}
    for key in ("entry", "menu", "on_scene_end", "agent_scene"):
        if key in data:
            value = PARSERS["target"](data[key], base + (key,), ctx, None)
            if value is not MISSING:
                kwargs[key] = value
    for key in ("agent_queue", "emergency_queue"):
        if key in data:
            value = PARSERS["queue"](data[key], base + (key,), ctx, None)
            if value is not MISSING:
                kwargs[key] = value
    for key in ("agent_queue", "emergency_queue"):
        if key not in data:
            ctx.queues.append((getattr(Hotline, key), base))
    default = data.get("default_language", langs[0])
    if default not in langs:
        ctx.error(base + ("default_language",), "flow-bad-value", "default_language must be one of languages")
    kwargs["default_language"] = default if default in langs else langs[0]
    for key in ("no_input", "no_match"):
        if key in data:
            value = PARSERS["retry"](data[key], base + (key,), ctx, None)
            if value is not MISSING:
                kwargs[key] = RetryPolicy(value.get("say"), value.get("retry", 2), value.get("then", "agent"))
    if "timeouts" in data:
        t = data["timeouts"]
        if not isinstance(t, dict) or not all(isinstance(v, (int, float)) and 0 < v <= 120 for v in t.values()):
            ctx.error(base + ("timeouts",), "flow-bad-value", "timeouts map a name to seconds (0..120]")
        else:
            kwargs["timeouts"] = {**Hotline().timeouts, **{k: float(v) for k, v in t.items()}}
    if "texts" in data:
        texts = data["texts"]
        if not isinstance(texts, dict):
            ctx.error(base + ("texts",), "flow-bad-type", "texts map a name to a prompt")
        else:
            kwargs["texts"] = {k: parse_text(v, base + ("texts", k), ctx) or {} for k, v in texts.items()}
    escapes = []
    for i, item in enumerate(data.get("escapes") or []):
        path = base + ("escapes", i)
        if not isinstance(item, dict) or "name" not in item or "then" not in item:
            ctx.error(path, "flow-bad-type", "an escape is {name, then, dtmf?, words?}")
            continue
        unknown = set(item) - {"name", "then", "dtmf", "words"}
        for key in unknown:
            ctx.error(path + (key,), "flow-unknown-key", f"unknown escape key {key!r}", key=True)
        then = PARSERS["target"](item["then"], path + ("then",), ctx, None)
        dtmf = str(item.get("dtmf", ""))
        if dtmf and not re.fullmatch(r"[0-9*#]", dtmf):
            ctx.error(path + ("dtmf",), "flow-bad-value", "an escape key is one of 0-9 * #")
        escapes.append(Escape(str(item["name"]), then if then is not MISSING else "agent", dtmf,
                              _words(item.get("words", {}), path + ("words",), ctx)))
    kwargs["escapes"] = tuple(escapes)
    return Hotline(**kwargs), ctx


def parse_scene(doc: Document, languages: tuple[str, ...]) -> ParsedScene | None:
    data = doc.data
    ctx = ParseContext(doc, languages)
    for key in data:
        if key not in SCENE_KEYS:
            ctx.error((key,), "flow-unknown-key",
                      f"unknown scene key {key!r} (known: {', '.join(SCENE_KEYS)})", key=True)
    scene_id = data.get("id")
    if not isinstance(scene_id, str) or not _ID.match(scene_id):
        ctx.error(("id",), "flow-bad-id" if "id" in data else "flow-missing-key",
                  "a scene needs an id of lowercase letters, digits and _ (e.g. claim_status)")
        scene_id = f"?{os.path.basename(doc.path)}"
    title = parse_text(data.get("title"), ("title",), ctx) if "title" in data else None
    if "title" not in data:
        ctx.error((), "flow-missing-key", "a scene needs a title in every language")
    intents = _words(data.get("intents", {}), ("intents",), ctx)
    keywords = _words(data.get("keywords", {}), ("keywords",), ctx)
    if intents:
        for lang in languages:
            if not intents.get(lang):
                ctx.error(("intents",), "intent-missing-language",
                          f"no {lang!r} example utterances; callers speaking {lang} can't reach this scene")
    requires = PARSERS["strlist"](data.get("requires", []), ("requires",), ctx, None)
    if requires is not MISSING and any(r != "verified" for r in requires):
        ctx.error(("requires",), "flow-bad-value", "requires takes: verified")
    raw_steps = data.get("steps")
    steps: list[StepDef] = []
    parsed = ParsedScene(None, ctx)  # type: ignore[arg-type]
    if not isinstance(raw_steps, list) or not raw_steps:
        ctx.error(("steps",), "flow-missing-key" if raw_steps is None else "flow-bad-type",
                  "a scene needs a non-empty list of steps")
    else:
        for i, raw in enumerate(raw_steps):
            step = parse_step(raw, i, ("steps", i), ctx)
            if step is not None:
                steps.append(step)
                parsed.steps_paths[step.id] = ("steps", i)
    parsed.scene = SceneDef(
        id=scene_id, title=title or {}, intents=intents, keywords=keywords, steps=tuple(steps),
        file=doc.path, requires=tuple(requires) if requires is not MISSING else (),
        description=str(data.get("description", "")))
    return parsed


def parse_step(raw: Any, index: int, path: tuple, ctx: ParseContext) -> StepDef | None:
    types = step_types()
    if not isinstance(raw, dict):
        ctx.error(path, "flow-bad-step", "a step is a mapping such as `- say: {en: ..., zh: ...}`")
        return None
    if "type" in raw:
        kind = raw["type"]
        if kind not in types:
            ctx.error(path + ("type",), "flow-unknown-step",
                      f"unknown step type {kind!r} (known: {', '.join(sorted(types))})")
            return None
        value: Any = {k: v for k, v in raw.items() if k not in STEP_COMMON_KEYS}
        value_path = path
    else:
        kinds = [k for k in raw if k not in STEP_COMMON_KEYS]
        known = [k for k in kinds if k in types]
        for k in kinds:
            if k not in types:
                ctx.error(path + (k,), "flow-unknown-step",
                          f"unknown step type {k!r} (known: {', '.join(sorted(types))})", key=True)
        if len(known) != 1:
            if not kinds:
                ctx.error(path, "flow-bad-step", "a step names one step type")
            elif len(known) > 1:
                ctx.error(path, "flow-bad-step", f"one step type per step, found {', '.join(known)}")
            return None
        if len(kinds) != 1:
            return None
        kind = known[0]
        value, value_path = raw[kind], path + (kind,)
    stype = types[kind]
    step_id = raw.get("id", f"step{index + 1}")
    if not isinstance(step_id, str) or not _ID.match(step_id):
        ctx.error(path + ("id",), "flow-bad-id", "a step id is lowercase letters, digits and _")
        step_id = f"step{index + 1}"
    params = parse_params(stype, value, value_path, ctx)
    if "when" in raw:
        params["when"] = PARSERS["condition"](raw["when"], path + ("when",), ctx, None)
    return StepDef(step_id, kind, params, index, path, "id" in raw)


def parse_params(stype: StepType, value: Any, path: tuple, ctx: ParseContext) -> dict[str, Any]:
    fields = stype.fields
    wrapped = None  # the field the whole value fills; its YAML path is the step's own
    if stype.params_field:
        value = wrapped = {stype.params_field: value}
    short = stype.shorthand
    if short and (not isinstance(value, dict) or (
            fields[short].kind == "text" and value and (
                set(value) <= set(ctx.languages) | {"audio"} or not set(value) & set(fields)))):
        value = wrapped = {short: value}
    if value is None and not any(f.required for f in fields.values()):
        value = {}
    if not isinstance(value, dict):
        ctx.error(path, "flow-bad-type", f"`{stype.name}` takes a mapping of: {', '.join(fields)}")
        return {}
    params: dict[str, Any] = {}
    for key, item in value.items():
        spec = fields.get(key)
        if spec is None:
            ctx.error(path + (key,), "flow-unknown-key",
                      f"`{stype.name}` has no {key!r} (it takes: {', '.join(fields)})", key=True)
            continue
        parsed = PARSERS[spec.kind](item, path if wrapped else path + (key,), ctx, spec)
        if parsed is not MISSING:
            params[key] = parsed
    for key, spec in fields.items():
        if key not in value:
            if spec.required:
                ctx.error(path, "flow-missing-key", f"`{stype.name}` needs {key!r}")
            elif spec.default is not None:
                params[key] = spec.default
    return params
