"""`ivr bench speech --json`: on-box speech, measured.

Sections:
  asr    recogniser latency and real-time factor, windows, workers vs batching, WER/CER
         (tests/bench/speech_asr.py)
  tts    piper real-time factor, time to first audio cached and uncached (tests/bench/speech_tts.py)
  turns  real SIP calls (SIPp on this box) whose callers speak over the main menu at the same
         moment, N at a time (one at a time: 8 calls in a row): turn latency, from the end of the caller's speech to the first
         audio of the reply (the controller's `turn_latency` timing events), and its `asr` part
         (end of speech -> text: 300 ms of endpoint silence included). Levels rise until p95
         passes 1.5 s.

Options: --sections asr,tts,turns  --levels 1,5,10,20,30,40  --controller agi|ari
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ivr.config import load_config  # noqa: E402
from ivr.sim import Action, Script  # noqa: E402
from ivr.telephony import sipp  # noqa: E402
from ivr.telephony.asterisk import AsteriskHost  # noqa: E402

IVR = [sys.executable, "-m", "ivr"]
TURN_TARGET_MS = {"p50": 800, "p95": 1500}
PHRASE = "I lost my credit card"
SINGLE_RUNS = 8  # calls, one after another, for the one-caller figures


def _machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version()}


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(round(q * (len(values) - 1))))], 1)


def _config(work: Path, controller: str) -> Path:
    import yaml

    data = yaml.safe_load((ROOT / "config.yaml").read_text())
    data["flows"]["dir"] = str(ROOT / "flows")
    data["paths"] = {"var_dir": str(work / "var"), "dialplans": str(ROOT / "dialplans")}
    data["telephony"]["controller"] = controller
    # open all day: the same path whatever the time of the run
    data["calendar"]["business_hours"] = {d: "00:00-23:59" for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def _turns(levels: list[int], controller: str) -> dict:
    from ivr.store import read_recent

    work = Path(tempfile.mkdtemp(prefix="ivr-bench-speech-"))
    cfg_path = _config(work, controller)
    config = load_config(str(cfg_path))
    subprocess.run(IVR + ["down"], cwd=ROOT, capture_output=True, timeout=120)
    subprocess.run(IVR + ["--config", str(cfg_path), "up"], cwd=ROOT, check=True, capture_output=True,
                   timeout=600)
    # the caller speaks 2.5 s into the ~11 s main menu: every reply is a barge-in turn
    script = Script("bench", [Action("say", PHRASE), Action("silence", 3.0)], caller="+15550100005",
                    lang="en")
    results = []
    try:
        host = AsteriskHost.locate(config, provision=False)
        sipp.run(script, target=f"{config.telephony.bind}:{config.telephony.sip_port}",  # warm-up
                 service=config.telephony.extension, calls=1, timeout=120, say_gap_ms=2500)
        for level in levels:
            before = {c["call_id"] for c in read_recent(config.var_dir / "ivr.db", 100000)}
            for _ in range(SINGLE_RUNS if level == 1 else 1):  # one caller: a few in a row, for a p95
                result = sipp.run(script, target=f"{config.telephony.bind}:{config.telephony.sip_port}",
                                  service=config.telephony.extension, calls=level, rate=max(level, 1) * 4,
                                  timeout=300, say_gap_ms=2500, end_wait_ms=20000)
            expected = SINGLE_RUNS if level == 1 else level
            deadline = time.monotonic() + 30
            while True:
                calls = [c for c in read_recent(config.var_dir / "ivr.db", 100000) if c["call_id"] not in before]
                if len([c for c in calls if c.get("outcome")]) >= expected or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            turns = [e["ms"] for c in calls for e in c["events"]
                     if e.get("type") == "timing" and e.get("name") == "turn_latency"]
            asr = [e["ms"] for c in calls for e in c["events"]
                   if e.get("type") == "timing" and e.get("name") == "asr"]
            routed = sum(1 for c in calls if "card_lost" in (c.get("scenes") or []))
            results.append({"speaking_at_once": level, "calls_recorded": len(calls), "routed_by_speech": routed,
                            "sipp_exit": result.returncode,
                            "turn_latency_ms": {"p50": _pct(turns, 0.5), "p95": _pct(turns, 0.95), "n": len(turns)},
                            "end_of_speech_to_text_ms": {"p50": _pct(asr, 0.5), "p95": _pct(asr, 0.95)},
                            "channels_left": host.channel_count()})
            p95 = _pct(turns, 0.95)
            if p95 is None or p95 > TURN_TARGET_MS["p95"]:
                break
    finally:
        subprocess.run(IVR + ["--config", str(cfg_path), "down"], cwd=ROOT, capture_output=True, timeout=120)
    within = [r["speaking_at_once"] for r in results
              if r["turn_latency_ms"]["p95"] is not None and r["turn_latency_ms"]["p95"] <= TURN_TARGET_MS["p95"]
              and r["routed_by_speech"] == r["calls_recorded"]]
    one = next((r for r in results if r["speaking_at_once"] == 1), None)
    return {"controller": controller, "phrase": PHRASE, "levels": results,
            "max_speaking_at_once_within_p95_1500ms": max(within, default=0),
            "targets": TURN_TARGET_MS,
            "pass": None if one is None else {
                "p50": (one["turn_latency_ms"]["p50"] or 1e9) <= TURN_TARGET_MS["p50"],
                "p95": (one["turn_latency_ms"]["p95"] or 1e9) <= TURN_TARGET_MS["p95"]}}


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="ivr bench speech")
    parser.add_argument("--sections", default="asr,tts,turns")
    parser.add_argument("--levels", default="1,5,10,20,30,40")
    parser.add_argument("--controller", choices=("agi", "ari"), default="agi")
    parser.add_argument("--json", action="store_true", help="accepted; the output is always JSON")
    args = parser.parse_args(argv)
    sections = args.sections.split(",")
    out: dict = {"machine": _machine()}
    speech_cfg = load_config(str(ROOT / "config.yaml")).speech
    if "asr" in sections:
        from speech_asr import bench_asr

        out["asr"] = bench_asr(speech_cfg)
    if "tts" in sections:
        from speech_tts import bench_tts

        out["tts"] = bench_tts(speech_cfg)
    if "turns" in sections:
        out["turns"] = _turns([int(x) for x in args.levels.split(",")], args.controller)
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=2))
