"""`ivr check` on broken flow sets: every defect is reported as `path:line:col: code: message`,
at the right line, with exit code 1 and never a traceback. Plus the good fixture and hot reload.

Each folder in tests/fixtures/broken/ is a small valid flow set with ONE defect; its expect.txt
lists every `<file>:<line> <code>` that `ivr check` must report -- and nothing else.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ivr.flow.loader import load_flows
from ivr.flow.registry import step_types
from ivr.flow.repository import FlowRepository

ROOT = Path(__file__).parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
BROKEN = FIXTURES / "broken"
GOOD = FIXTURES / "good"
CASES = sorted(p.name for p in BROKEN.iterdir() if p.is_dir() and (p / "expect.txt").exists())
PROBLEM = re.compile(r"^(?P<path>.+?):(?P<line>\d+):(?P<col>\d+): (?P<code>[a-z0-9-]+): (?P<message>.+)$")

QUEUES_CONF = """\
[general]
persistentmembers = yes

[agents]
strategy = rrmemory

[emergency]
strategy = ringall

[claims]
strategy = rrmemory
"""


def run_check(*paths: Path | str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ivr", "check", *map(str, paths)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8"})


def reported(stdout: str, case_dir: Path) -> set[tuple[str, int, str]]:
    """(file name, line, code) of every problem line; any other line on stdout fails the test."""
    found = set()
    for line in stdout.splitlines():
        m = PROBLEM.match(line)
        assert m, f"not a `path:line:col: code: message` line: {line!r}"
        path = Path(m["path"])
        assert path.parent.resolve() == case_dir.resolve(), f"problem outside the case folder: {line}"
        assert int(m["col"]) >= 1 and m["message"].strip()
        found.add((path.name, int(m["line"]), m["code"]))
    return found


def expected(case_dir: Path) -> set[tuple[str, int, str]]:
    out = set()
    for line in (case_dir / "expect.txt").read_text().splitlines():
        if line.strip():
            where, code = line.split()
            name, lineno = where.rsplit(":", 1)
            out.add((name, int(lineno), code))
    assert out, f"{case_dir}/expect.txt is empty"
    return out


def assert_check_fails(case_dir: Path, want: set[tuple[str, int, str]]) -> subprocess.CompletedProcess:
    proc = run_check(case_dir)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert "internal-error" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert reported(proc.stdout, case_dir) == want, proc.stdout
    assert re.search(r"^\d+ error\(s\)$", proc.stderr, re.M), proc.stderr
    return proc


def test_there_are_enough_cases():
    assert len(CASES) >= 30, CASES


@pytest.mark.parametrize("case", CASES)
def test_broken_case(case):
    assert_check_fails(BROKEN / case, expected(BROKEN / case))


def test_alias_bomb_is_rejected_fast():
    start = time.monotonic()
    proc = assert_check_fails(BROKEN / "yaml_alias_bomb", {("lol.yaml", 4, "yaml-too-complex")})
    assert time.monotonic() - start < 15, "the alias bomb took too long"
    assert "alias" in proc.stdout


def test_message_mentions_what_is_wrong():
    proc = run_check(BROKEN / "dangling_goto")
    assert "'main_manu'" in proc.stdout
    proc = run_check(BROKEN / "yaml_duplicate_key")
    assert "duplicate key 'then' (first at line 9)" in proc.stdout
    proc = run_check(BROKEN / "yaml_syntax_unclosed")
    assert "starts at line 5" in proc.stdout  # where the unclosed [ was opened



def test_a_broken_file_hides_only_references_to_its_own_scenes(tmp_path):
    """main_menu.yaml doesn't parse: `goto: main_menu` is not reported, `goto: nowhere` still is."""
    case = tmp_path / "case"
    shutil.copytree(BROKEN / "yaml_tab_indent", case)
    (case / "expect.txt").unlink()
    welcome = case / "welcome.yaml"
    welcome.write_text(welcome.read_text().replace("steps:\n", "steps:\n  - branch:\n      cases:\n"
                                                   "        - if: {flag: closed}\n          then: nowhere\n"))
    assert_check_fails(case, {("main_menu.yaml", 11, "yaml-tab"), ("welcome.yaml", 7, "flow-dangling-goto")})

def _copy_good(tmp_path: Path) -> Path:
    dest = tmp_path / "flows"
    shutil.copytree(GOOD, dest)
    return dest


def test_oversize_file(tmp_path):
    flows = _copy_good(tmp_path)
    header = "id: big\ntitle: {en: Big, zh: 大}\ndescription: |\n"
    body = ("  " + "x" * 120 + "\n") * 9000  # ~1.1 MB of otherwise valid YAML
    (flows / "big.yaml").write_text(header + body + "steps:\n  - goto: agent\n")
    assert (flows / "big.yaml").stat().st_size > 1_000_000
    proc = assert_check_fails(flows, {("big.yaml", 1, "yaml-too-large")})
    assert "limit is 1000000" in proc.stdout


def test_non_utf8_bytes(tmp_path):
    flows = _copy_good(tmp_path)
    text = "id: latin\ntitle: {en: Café, zh: 咖啡}\nintents: {en: [coffee], zh: [咖啡]}\nsteps:\n"
    raw = text.encode() + b'  - say: {en: "Caf\xe9", zh: "\xe5\x92\x96\xe5\x95\xa1"}\n'
    (flows / "latin.yaml").write_bytes(raw)
    proc = assert_check_fails(flows, {("latin.yaml", 5, "yaml-not-utf8")})
    assert "latin.yaml:5:19: yaml-not-utf8: byte 0xe9" in proc.stdout  # column counts characters


def test_a_utf8_bom_is_fine(tmp_path):
    flows = _copy_good(tmp_path)
    path = flows / "accident.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    proc = run_check(flows)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_missing_folder_and_no_files(tmp_path):
    proc = run_check(tmp_path)
    assert proc.returncode == 1
    assert f"{tmp_path}:1:1: flow-no-files:" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_unknown_queue_against_a_given_queues_conf(tmp_path):
    conf = tmp_path / "queues.conf"
    conf.write_text(QUEUES_CONF)
    case = BROKEN / "unknown_queue"
    result = load_flows([str(case)], queues_conf=str(conf))
    assert [(Path(p.path).name, p.line, p.code) for p in result.problems] == [
        ("claims.yaml", 13, "flow-unknown-queue")]
    assert "defined: agents, claims, emergency" in result.problems[0].message
    # the good set transfers to `claims` and `emergency`: both defined here
    assert load_flows([str(GOOD)], queues_conf=str(conf)).problems == []
    # ...but not in a conf without them
    conf.write_text("[agents]\nstrategy = rrmemory\n")
    codes = {(Path(p.path).name, p.code) for p in load_flows([str(GOOD)], queues_conf=str(conf)).problems}
    assert codes == {("hotline.yaml", "flow-unknown-queue"), ("claim_status.yaml", "flow-unknown-queue")}


# --- the good fixture ---

def test_good_fixture_passes_the_cli():
    proc = run_check(GOOD)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == ""
    assert re.search(r"^ok: 6 scenes in 7 files, version [0-9a-f]{12}$", proc.stderr, re.M), proc.stderr


def test_good_fixture_uses_every_step_type():
    result = load_flows([str(GOOD)])
    assert result.problems == []
    kinds = {step.kind for scene in result.flowset.scenes.values() for step in scene.steps}
    assert kinds == set(step_types())


def test_good_fixture_parses_to_the_expected_values():
    fs = load_flows([str(GOOD)]).flowset
    assert fs.hotline.on_scene_end == "anything_else"
    assert [e.name for e in fs.hotline.escapes] == ["agent", "repeat"]
    assert fs.hotline.no_match.retry == 2 and fs.hotline.no_match.say["zh"] == "抱歉，没有听清楚。"
    card = fs.scene("card_freeze")
    assert card.requires == ("verified",)
    ask = card.steps[1]
    assert (ask.kind, ask.id, ask.params["input"], ask.params["sensitive"]) == (
        "ask", "step2", ("dtmf",), True)
    welcome = fs.scene("welcome")
    assert welcome.steps[1].params["prompt"] == {"en": "Welcome to the test hotline.",
                                                 "zh": "欢迎致电测试热线。"}
    assert welcome.steps[2].params == {"values": {"lang": "{profile.lang}"},
                                       "when": {"profile": "lang", "in": ["en", "zh"]}}
    assert welcome.steps[-1].params["say"]["en"] == "We are closed. Goodbye."
    options = fs.scene("main_menu").steps[0].params["options"]
    assert [o["key"] for o in options] == ["1", "2", "3", "0"]


# --- hot reload ---

def _touch(path: Path, text: str) -> None:
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))  # a new mtime even on a coarse clock


def test_reload_keeps_the_old_version_on_a_broken_edit_and_swaps_a_good_one(tmp_path):
    flows = _copy_good(tmp_path)
    repo = FlowRepository([str(flows)])
    first = repo.load()
    assert repo.current is first
    assert repo.reload() is False  # nothing changed

    accident = flows / "accident.yaml"
    good_text = accident.read_text()
    _touch(accident, good_text.replace("kind: accident", "kind: accident\n      colour: red"))
    assert repo.reload() is False
    assert repo.current is first and repo.current.version == first.version
    problems = [(Path(p.path).name, p.code) for p in repo.last_problems]
    assert problems == [("accident.yaml", "flow-unknown-key")]

    _touch(accident, "id: accident\n\tsteps: []\n")  # not even YAML
    assert repo.reload() is False
    assert repo.current is first
    assert [p.code for p in repo.last_problems] == ["yaml-tab"]

    call_flows = repo.current  # a call in progress holds this object
    _touch(accident, good_text.replace("Connecting you", "Putting you through"))
    assert repo.reload() is True
    second = repo.current
    assert second is not first and second.version != first.version
    assert repo.last_problems == []
    assert second.scene("accident").steps[0].params["say"]["en"].startswith("Putting you through")
    # the call that started before the swap still sees the old flows, unchanged
    assert call_flows is first
    assert call_flows.scene("accident").steps[0].params["say"]["en"].startswith("Connecting you")

    # restoring the original text brings back the original version id (content-addressed)
    _touch(accident, good_text)
    assert repo.reload() is True
    assert repo.current.version == first.version


def test_reload_after_a_file_is_added_or_removed(tmp_path):
    flows = _copy_good(tmp_path)
    repo = FlowRepository([str(flows)])
    first = repo.load()
    orphan = flows / "orphan.yaml"
    orphan.write_text("id: orphan\ntitle: {en: Orphan, zh: 孤儿}\nsteps:\n  - hangup: {}\n")
    assert repo.reload() is False  # unreachable scene: rejected
    assert [p.code for p in repo.last_problems] == ["flow-unreachable-scene"]
    assert repo.current is first
    orphan.unlink()
    # back to the same files as the loaded version: nothing to swap
    assert repo.reload() is False
    assert repo.current is first


async def test_an_edit_is_prepared_before_it_goes_live(tmp_path):
    """watch() renders an edit's prompts (prepare) while calls still get the old version, then swaps;
    a preparation that fails still lets the edit go live."""
    import asyncio

    flows = _copy_good(tmp_path)
    repo = FlowRepository([str(flows)])
    first = repo.load()
    seen = []

    async def prepare(flowset):
        seen.append((flowset.version, repo.current is first))
        if len(seen) == 2:
            raise RuntimeError("voice broke")

    watcher = asyncio.ensure_future(repo.watch(0.02, prepare))
    try:
        accident = flows / "accident.yaml"
        good_text = accident.read_text()
        _touch(accident, good_text.replace("Connecting you", "Putting you through"))
        for _ in range(200):
            if repo.current is not first:
                break
            await asyncio.sleep(0.02)
        second = repo.current
        assert second is not first and seen == [(second.version, True)]  # prepared while the old one served
        _touch(accident, good_text)
        for _ in range(200):
            if repo.current is not second:
                break
            await asyncio.sleep(0.02)
        assert repo.current.version == first.version and len(seen) == 2
    finally:
        watcher.cancel()
