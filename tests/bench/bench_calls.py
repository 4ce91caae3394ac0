"""`ivr bench calls --json`: real SIP calls through Asterisk, from SIPp on the same box.

For each concurrency level, the same caller (listen to a ~10 s prompt, press 1, listen to a
second ~10 s prompt, hear goodbye; calls start at level/20 per second so they all overlap)
calls our FastAGI controller (a one-scene flow set, tests/bench/flows_calls/) and then a bare
panoramisk handler that answers, plays the same prompt, reads a digit and hangs up. Reported
per level: SIPp's successful/failed calls and retransmissions, the CPU each handler process
used per call, Asterisk's CPU per call, and answer-to-first-prompt latency from the controller's
`timing` events. The ramp stops at the first level with a failed call.

Keypad calls: speech is off in the benchmark's config (no audio fork per call); what calls that
speak cost is measured by `ivr bench speech`.

Options: --levels 50,100,200,300  --quick (levels 20,50)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ivr.config import load_config  # noqa: E402
from ivr.sim import Action, Script  # noqa: E402
from ivr.telephony import sipp  # noqa: E402
from ivr.telephony.call_batch import PeakChannels, wait_no_channels  # noqa: E402
from ivr.telephony.asterisk import SOUNDS_DIR, AsteriskHost  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
IVR = [sys.executable, "-m", "ivr"]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _asterisk_pid() -> int:
    """The Asterisk daemon (`asterisk -f`), found in /proc: the chroot keeps no pid file we can trust."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"/asterisk") and b"-f" in argv:
                return int(proc.name)
    raise RuntimeError("Asterisk is not running")


def _machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version()}


def _bench_config(work: Path) -> Path:
    base = (ROOT / "config.yaml").read_text()
    text = base.replace("  dir: flows\n", f"  dir: {ROOT / 'tests/bench/flows_calls'}\n")
    text = text.replace("  reload: true", "  reload: false")
    text = text.replace("  backend: e5", "  backend: keywords")
    text = text.replace("  var_dir: var\n", f"  var_dir: {work / 'var'}\n")
    text = text.replace("  dialplans: dialplans\n", f"  dialplans: {ROOT / 'dialplans'}\n")
    text = text.replace("  min_score: 0.90       # e5 scale; see README\n  clarify_margin: 0.004\n", "")
    # keypad calls: no audio fork per call (speech capacity is `ivr bench speech`'s business)
    text = text.replace("  enabled: true          # stream callers' audio", "  enabled: false          # stream callers' audio")
    path = work / "config.yaml"
    path.write_text(text)
    return path


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(round(q * (len(values) - 1))))], 1)


def _run_level(host, config, level: int, service: str, pid: int, ast_pid: int) -> dict:
    script = Script("bench", [Action("silence", 10.5), Action("dtmf", "1")])
    cpu0, ast0 = _cpu_seconds(pid), _cpu_seconds(ast_pid)
    started = time.monotonic()
    # Calls last ~24 s and start over ~20 s, so they all overlap; the setup rate stays at
    # level/20 per second (10/s for 200): bursts of call setups are a different measurement.
    with PeakChannels(host.channel_count) as peak:  # how many calls really overlap
        result = sipp.run(script, target=f"{config.telephony.bind}:{config.telephony.sip_port}",
                          service=service, caller="+15550199999", calls=level, rate=max(5.0, level / 20),
                          key_gap_ms=0, answer_wait_ms=0, end_wait_ms=30000, dtmf="info", timeout=300)
    wall = time.monotonic() - started
    leftover = wait_no_channels(host.channel_count, 60)
    cpu1, ast1 = _cpu_seconds(pid), _cpu_seconds(ast_pid)
    stats = result.stats()
    ok = stats.get("successful") or 1
    return {"calls": level, "peak_channels": peak.peak, **stats, "sipp_exit": result.returncode, "wall_s": round(wall, 1),
            "handler_cpu_ms_per_call": round((cpu1 - cpu0) / ok * 1000, 2),
            "asterisk_cpu_ms_per_call": round((ast1 - ast0) / ok * 1000, 2),
            "channels_left": leftover}


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="ivr bench calls")
    parser.add_argument("--levels", default="50,100,200,300")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true", help="accepted; the output is always JSON")
    args = parser.parse_args(argv)
    levels = [20, 50] if args.quick else [int(x) for x in args.levels.split(",")]
    work = Path(tempfile.mkdtemp(prefix="ivr-bench-calls-"))
    cfg_path = _bench_config(work)
    config = load_config(str(cfg_path))
    subprocess.run(IVR + ["down"], cwd=ROOT, capture_output=True, timeout=120)
    subprocess.run(IVR + ["--config", str(cfg_path), "up"], cwd=ROOT, check=True, capture_output=True,
                   timeout=600)
    bare = None
    try:
        host = AsteriskHost.locate(config, provision=False)
        pid = int((config.var_dir / "run" / "controller.pid").read_text().split()[0])
        ast_pid = _asterisk_pid()
        from ivr.speech.prompts import PromptCache
        from ivr.speech.voices import build_synthesizer
        import asyncio

        flows_text = (ROOT / "tests/bench/flows_calls/bench.yaml").read_text()
        texts = [t.split('"', 1)[0] for t in flows_text.split('en: "')[1:]]
        texts = [texts[0], texts[2], texts[3]]  # long prompt, second prompt, goodbye ("Press 1." is [1])
        cache = PromptCache(host.host_path(SOUNDS_DIR) / "cache", build_synthesizer(config.speech))
        prompts = ["/" + str(asyncio.run(cache.render(t, "en")).relative_to(host.root)) for t in texts]
        bare = subprocess.Popen([sys.executable, str(ROOT / "tests/bench/bare_agi.py"),
                                 str(config.telephony.agi_port + 17), *prompts],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        bare.stdout.readline()
        results = []
        for level in levels:
            ours = _run_level(host, config, level, config.telephony.extension, pid, ast_pid)
            base = _run_level(host, config, level, "95599", bare.pid, ast_pid)
            results.append({"level": level, "controller": ours, "bare": base})
            if ours.get("failed") or ours.get("sipp_exit"):
                break
        from ivr.store import read_recent

        calls = read_recent(config.var_dir / "ivr.db", 100000)
        firsts = [e["ms"] for c in calls for e in c["events"]
                  if e.get("type") == "timing" and e.get("name") == "answer_to_first_prompt"]
        outcomes: dict[str, int] = {}
        for c in calls:
            outcomes[c["outcome"] or "none"] = outcomes.get(c["outcome"] or "none", 0) + 1
    finally:
        if bare is not None:
            bare.terminate()
        subprocess.run(IVR + ["--config", str(cfg_path), "down"], cwd=ROOT, capture_output=True, timeout=120)
    clean = [r for r in results if not r["controller"].get("failed") and not r["controller"].get("sipp_exit")]
    best = max((r["level"] for r in clean), default=0)
    ratios = [r["controller"]["handler_cpu_ms_per_call"] / r["bare"]["handler_cpu_ms_per_call"]
              for r in results if r["bare"]["handler_cpu_ms_per_call"]]
    p95 = _pct(firsts, 0.95)
    return {
        "machine": _machine(),
        "levels": results,
        "max_concurrent_without_failure": best,
        "controller_vs_bare_cpu_ratio": round(statistics.median(ratios), 2) if ratios else None,
        "answer_to_first_prompt_ms": {"p50": _pct(firsts, 0.5), "p95": p95, "n": len(firsts)},
        "recorded_outcomes": outcomes,
        "targets": {"concurrent": 200, "cpu_ratio": 1.5, "first_prompt_p95_ms": 150},
        "pass": {"concurrent": best >= 200,
                 "cpu_ratio": bool(ratios) and statistics.median(ratios) <= 1.5,
                 "first_prompt_p95": p95 is not None and p95 < 150},
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=2))
