"""Prompt text: pick the call's language and fill {slot} and {claim.status_text} placeholders."""

from __future__ import annotations

import re
from typing import Any

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][\w.]*)\}")


def lookup(data: dict[str, Any], dotted: str, lang: str) -> str:
    value: Any = data
    for part in dotted.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif part == "last4" and isinstance(value, (str, int)):  # "the number ending {mobile.last4}"
            value = str(value)[-4:]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            value = None
        if value is None:
            return ""
    if isinstance(value, dict) and lang in value:  # a localised value from a data action
        value = value[lang]
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def render(text: dict[str, str] | None, lang: str, values: dict[str, Any], fallback: str = "en") -> str:
    if not text:
        return ""
    template = text.get(lang) or text.get(fallback) or next(
        (v for k, v in text.items() if k != "audio"), "")
    return _PLACEHOLDER.sub(lambda m: lookup(values, m.group(1), lang), template)


def placeholders(template: str) -> list[str]:
    return _PLACEHOLDER.findall(template)


_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def spoken_seconds(text: str) -> float:
    """How long text takes to say at about 150 words a minute (Mandarin: 5 characters a second)."""
    cjk = len(_CJK.findall(text))
    # punctuation on its own ("。", "？", " - ") is not a word
    words = sum(1 for w in _CJK.sub(" ", text).split() if any(c.isalnum() for c in w))
    return round(words * 0.4 + cjk * 0.2, 3)


def prompt_texts(flows):
    """Every prompt in the flows (hotline texts and step parameters): each `{lang: text, ...}`
    mapping, with its `audio` overrides if any, in the order they appear."""
    langs = set(flows.hotline.languages)

    def walk(value):
        if isinstance(value, dict):
            keys = set(value) - {"audio"}
            if keys and keys <= langs and all(isinstance(v, str) for k, v in value.items() if k != "audio"):
                yield value
                return
            for item in value.values():
                yield from walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                yield from walk(item)

    for text in flows.hotline.texts.values():
        yield from walk(text)
    for scene in flows.scenes.values():
        for step in scene.steps:
            yield from walk(step.params)


def static_prompts(flows) -> list[tuple[str, str]]:
    """Every prompt text without placeholders, per language: what can be rendered ahead."""
    found: dict[tuple[str, str], None] = {}
    for prompt in prompt_texts(flows):
        for lang, text in prompt.items():
            if lang != "audio" and "{" not in text:
                found[(text, lang)] = None
    return list(found)
