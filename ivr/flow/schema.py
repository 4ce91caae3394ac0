"""Typed parsing of step parameters, with located problems instead of exceptions.

Each step type declares its fields (ivr.flow.registry.Field); this module checks a YAML value
against the field's kind and returns the clean value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from ivr.errors import Problem
from ivr.flow import conditions
from ivr.flow.validators import SPEC_KEYS
from ivr.yamlsafe import Document

INPUT_KINDS = ("dtmf", "speech")
MISSING = object()


@dataclass
class ParseContext:
    doc: Document
    languages: tuple[str, ...]
    problems: list[Problem] = field(default_factory=list)
    targets: list[tuple[str, tuple]] = field(default_factory=list)  # (target, yaml path)
    queues: list[tuple[str, tuple]] = field(default_factory=list)

    def error(self, path: tuple, code: str, message: str, *, key: bool = False) -> None:
        self.problems.append(self.doc.problem(path, code, message, key=key))


def parse_text(value: Any, path: tuple, ctx: ParseContext) -> dict[str, str] | None:
    """A prompt in every declared language: {en: "...", zh: "..."} (optional audio: {en: file})."""
    if isinstance(value, str):
        if len(ctx.languages) == 1:
            return {ctx.languages[0]: value}
        ctx.error(path, "prompt-missing-language",
                  f"give the prompt in every language ({', '.join(ctx.languages)}), "
                  "e.g. {en: \"...\", zh: \"...\"}")
        return None
    if not isinstance(value, dict):
        ctx.error(path, "flow-bad-type", "a prompt is a mapping of language to text")
        return None
    out: dict[str, str] = {}
    for lang, text in value.items():
        if lang == "audio":
            if not isinstance(text, dict) or not all(isinstance(v, str) for v in text.values()):
                ctx.error(path + ("audio",), "flow-bad-type", "audio maps a language to a file")
            continue
        if lang not in ctx.languages:
            ctx.error(path + (lang,), "prompt-unknown-language",
                      f"language {lang!r} is not declared (hotline languages: "
                      f"{', '.join(ctx.languages)})", key=True)
            continue
        if not isinstance(text, (str, int, float)) or isinstance(text, bool):
            ctx.error(path + (lang,), "flow-bad-type", "prompt text must be text")
            continue
        out[lang] = str(text)
    for lang in ctx.languages:
        if lang not in value:
            ctx.error(path, "prompt-missing-language", f"prompt has no {lang!r} text")
    if isinstance(value.get("audio"), dict):
        out["audio"] = dict(value["audio"])  # type: ignore[assignment]
    return out


def _scalar(kind: type, label: str) -> Callable:
    def parse(value: Any, path: tuple, ctx: ParseContext, spec) -> Any:
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            ctx.error(path, "flow-bad-type", f"expected {label}, got {type(value).__name__}")
            return MISSING
        if spec.choices and value not in spec.choices:
            ctx.error(path, "flow-bad-value", f"{value!r} is not one of {', '.join(spec.choices)}")
            return MISSING
        return value

    return parse


def _text(value, path, ctx, spec):
    parsed = parse_text(value, path, ctx)
    return MISSING if parsed is None else parsed


def _target(value, path, ctx, spec):
    if not isinstance(value, str) or not value:
        ctx.error(path, "flow-bad-type", "a target is a step id, a scene id, or one of "
                  "next/agent/menu/repeat/hangup/end")
        return MISSING
    ctx.targets.append((value, path))
    return value


def _queue(value, path, ctx, spec):
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
        ctx.error(path, "flow-bad-value", "a queue name is letters, digits, _ . - (64 at most)")
        return MISSING
    ctx.queues.append((value, path))
    return value


def _regex(value, path, ctx, spec):
    if not isinstance(value, str):
        ctx.error(path, "flow-bad-type", "a pattern is text")
        return MISSING
    try:
        re.compile(value)
    except re.error as exc:
        ctx.error(path, "flow-bad-regex", f"bad regular expression: {exc}")
        return MISSING
    return value


def _strlist(value, path, ctx, spec):
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, (str, int)) for i in items):
        ctx.error(path, "flow-bad-type", "expected text or a list of text")
        return MISSING
    return tuple(str(i) for i in items)


def _inputs(value, path, ctx, spec):
    items = _strlist(value, path, ctx, spec)
    if items is MISSING:
        return MISSING
    bad = [i for i in items if i not in INPUT_KINDS]
    if bad or not items:
        ctx.error(path, "flow-bad-value", f"input is a list of {' and '.join(INPUT_KINDS)}")
        return MISSING
    return items


def _words(value, path, ctx, spec):
    """{en: [phrases], zh: [phrases]}: words that select something by speech."""
    if not isinstance(value, dict):
        ctx.error(path, "flow-bad-type", "expected {language: [phrases]}")
        return MISSING
    out = {}
    for lang, items in value.items():
        if lang not in ctx.languages:
            ctx.error(path + (lang,), "prompt-unknown-language",
                      f"language {lang!r} is not declared", key=True)
            continue
        parsed = _strlist(items, path + (lang,), ctx, spec)
        if parsed is not MISSING:
            out[lang] = parsed
    return out


def _mapping(value, path, ctx, spec):
    if not isinstance(value, dict):
        ctx.error(path, "flow-bad-type", "expected a mapping")
        return MISSING
    return value


def _condition(value, path, ctx, spec):
    for sub, message in conditions.check(value):
        ctx.error(path + sub, "flow-bad-condition", message)
    return value


def _fields(value, path, ctx, allowed: dict[str, tuple[Callable, bool]]) -> dict | None:
    if not isinstance(value, dict):
        ctx.error(path, "flow-bad-type", f"expected a mapping with {', '.join(allowed)}")
        return None
    out = {}
    for key, item in value.items():
        if key not in allowed:
            ctx.error(path + (key,), "flow-unknown-key",
                      f"unknown key {key!r} (allowed: {', '.join(allowed)})", key=True)
            continue
        parsed = allowed[key][0](item, path + (key,), ctx, _NOSPEC)
        if parsed is not MISSING:
            out[key] = parsed
    for key, (_, required) in allowed.items():
        if required and key not in value:
            ctx.error(path, "flow-missing-key", f"missing {key!r}")
    return out


def _retry(value, path, ctx, spec):
    """no_input / no_match: {say: prompt, retry: N, then: target}."""
    out = _fields(value, path, ctx, {"say": (_text, False), "retry": (_int, False),
                                     "then": (_target, False)})
    if out is None:
        return MISSING
    if out.get("retry", 0) < 0 or out.get("retry", 0) > 9:
        ctx.error(path + ("retry",), "flow-bad-value", "retry is 0..9")
    return out


def _options(value, path, ctx, spec):
    """menu options: [{key: "1", label: prompt, words: {...}, then: target, value: x}]."""
    if not isinstance(value, list) or not value:
        ctx.error(path, "flow-bad-type", "options is a non-empty list")
        return MISSING
    out, keys = [], set()
    for i, item in enumerate(value):
        opt = _fields(item, path + (i,), ctx, {
            "key": (_str, False), "label": (_text, True), "words": (_words, False),
            "then": (_target, True), "value": (_str, False)})
        if opt is None:
            continue
        key = opt.get("key")
        if key is not None:
            if not re.fullmatch(r"[0-9]", key):
                ctx.error(path + (i, "key"), "flow-bad-value", "an option key is one digit 0-9")
            elif key in keys:
                ctx.error(path + (i, "key"), "flow-duplicate-key", f"key {key} used twice")
            keys.add(key)
        out.append(opt)
    return tuple(out)


def _branches(value, path, ctx, spec):
    if not isinstance(value, list) or not value:
        ctx.error(path, "flow-bad-type", "expected a list of {if: condition, then: target}")
        return MISSING
    out = []
    for i, item in enumerate(value):
        rule = _fields(item, path + (i,), ctx, {"if": (_condition, True), "then": (_target, True)})
        if rule is not None and "if" in rule and "then" in rule:
            out.append(rule)
    return tuple(out)


def _rules(value, path, ctx, spec):
    """proactive rules: [{if: condition, scene: id, say: prompt, slots: {...}, score: 0..1}]."""
    if not isinstance(value, list) or not value:
        ctx.error(path, "flow-bad-type", "expected a list of rules")
        return MISSING
    out = []
    for i, item in enumerate(value):
        rule = _fields(item, path + (i,), ctx, {
            "name": (_str, False), "if": (_condition, True), "scene": (_target, True),
            "say": (_text, True), "slots": (_mapping, False), "score": (_float, False)})
        if rule is not None:
            out.append(rule)
    return tuple(out)


def _validator(value, path, ctx, spec):
    """validate: {type: digits, length: 8} | {type: regex, pattern: ...} | luhn | date | yesno."""
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, dict) or "type" not in value:
        ctx.error(path, "flow-bad-type", "validate needs a type: " + ", ".join(SPEC_KEYS))
        return MISSING
    kind = value["type"]
    if kind not in SPEC_KEYS:
        ctx.error(path + ("type",), "flow-unknown-validator",
                  f"unknown validator {kind!r} (known: {', '.join(SPEC_KEYS)})")
        return MISSING
    for key in value:
        if key != "type" and key not in SPEC_KEYS[kind]:
            ctx.error(path + (key,), "flow-unknown-key",
                      f"{kind} validator takes {', '.join(sorted(SPEC_KEYS[kind])) or 'no options'}",
                      key=True)
    if kind == "regex":
        if _regex(value.get("pattern"), path + ("pattern",), ctx, spec) is MISSING:
            return MISSING
    top = 1000 if kind == "text" else 64  # text is characters (an address), not keypad digits
    for key in ("length", "min_length", "max_length"):
        if key in value and (not isinstance(value[key], int) or not 1 <= value[key] <= top):
            ctx.error(path + (key,), "flow-bad-value", f"{key} is a whole number 1..{top}")
    return dict(value)


_NOSPEC = type("Spec", (), {"choices": ()})()
_str = _scalar(str, "text")
_int = _scalar(int, "a whole number")
_float = _scalar(float, "a number")
PARSERS: dict[str, Callable] = {
    "str": _str, "int": _int, "float": _float, "bool": _scalar(bool, "true or false"),
    "text": _text, "target": _target, "queue": _queue, "regex": _regex, "strlist": _strlist,
    "inputs": _inputs, "words": _words, "mapping": _mapping, "condition": _condition,
    "retry": _retry, "options": _options, "branches": _branches, "rules": _rules,
    "validator": _validator,
}
