"""Held-out paraphrases (tests/fixtures/paraphrases.yaml, written without looking at the flows'
intents) spoken at the main menu must land in the right scene at least 90% of the time."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ivr.app import build_router, build_services, flow_repository
from ivr.config import load_config
from ivr.events import Scene
from ivr.sim import Action, Script, simulate

ROOT = Path(__file__).resolve().parents[2]
PARAPHRASES = yaml.safe_load((ROOT / "tests" / "fixtures" / "paraphrases.yaml").read_text(encoding="utf-8"))
TARGET = 0.90


async def _landing(flows, services, text: str, lang: str) -> str | None:
    """The first scene after the main menu when the caller says `text` there."""
    script = Script("paraphrase", [Action("say", text)], lang=lang)
    result = await simulate(flows, services, script)
    scenes = [e.id for e in result.events if isinstance(e, Scene)]
    after = scenes[scenes.index("main_menu") + 1:] if "main_menu" in scenes else []
    return after[0] if after else None


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_paraphrases_reach_their_scene(lang):
    config = load_config(str(ROOT / "config.yaml"))
    flows = flow_repository(config).load()
    services = build_services(config, router=build_router(config))
    misses, total = [], 0
    for scene_id, by_lang in PARAPHRASES.items():
        for text in by_lang[lang]:
            total += 1
            landed = await _landing(flows, services, text, lang)
            if landed != scene_id:
                misses.append(f"{scene_id} <- {text!r}: {landed}")
    accuracy = 1 - len(misses) / total
    print(f"{lang}: {accuracy:.1%} of {total}")
    print("\n".join(misses))
    assert accuracy >= TARGET, f"{lang} accuracy {accuracy:.1%} < {TARGET:.0%}:\n" + "\n".join(misses)
