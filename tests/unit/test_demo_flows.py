"""Meta-tests: the shipped flows pass `ivr check`, have the demo scenes, and every simulator
script under flows/tests/ meets its expectations."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from ivr.app import build_router, build_services
from ivr.sim import parse_script, simulate

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = ("claim_report", "claim_status", "policy_query", "premium_payment", "card_bill",
            "card_lost", "roadside_rescue", "address_change", "complaint", "agent")
SCRIPTS = sorted((ROOT / "flows" / "tests").rglob("*.yaml"))


@pytest.fixture(scope="module")
def router(config):
    return build_router(config)


def test_ivr_check_flows_exits_zero():
    proc = subprocess.run([sys.executable, "-m", "ivr", "check", "flows"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == ""


def test_required_scenes_exist_with_intents_in_both_languages(flows):
    for scene_id in REQUIRED:
        scene = flows.scenes[scene_id]
        assert len(scene.intents.get("en", ())) >= 8, scene_id
        assert len(scene.intents.get("zh", ())) >= 8, scene_id


def test_every_required_scene_has_scripts_in_both_languages():
    for scene_id in REQUIRED:
        folder = ROOT / "flows" / "tests" / scene_id
        texts = [p.read_text(encoding="utf-8") for p in folder.glob("*.yaml")]
        assert any("lang: en" in t for t in texts), scene_id
        assert any("lang: zh" in t for t in texts), scene_id


@pytest.mark.parametrize("script_path", SCRIPTS, ids=[str(p.relative_to(ROOT / "flows" / "tests")) for p in SCRIPTS])
async def test_demo_script(script_path, config, flows, router):
    script = parse_script(str(script_path))
    now = (lambda: datetime.fromisoformat(script.at)) if script.at else None
    services = build_services(config, router=router, flags=script.flags, now=now)
    result = await simulate(flows, services, script)
    assert result.script.expect, f"{script_path} has no expectations"
    assert result.ok, "\n".join(result.failures)
