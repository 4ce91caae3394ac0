"""`ivr call --calls N`: N concurrent test calls from one script, and what became of them.

The admin's (and the acceptance's) load check: SIPp places the calls at `rate` per second;
Asterisk's channels are counted every second while they run; then the call store must hold N
new calls, each with an outcome, and Asterisk must be left with no channels.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Callable

from ivr.privacy import mask_phone
from ivr.sim import Script
from ivr.telephony import sipp

RECORD_WAIT = 30.0  # seconds for the last calls' ends to reach the store after SIPp is done


class PeakChannels:
    """While in the `with`, samples Asterisk's channel count every second: `.peak` is how many
    calls (and their audio forks) really overlapped."""

    def __init__(self, count_channels: Callable[[], int]) -> None:
        self._count = count_channels
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.peak = 0

    def _sample(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.peak = max(self.peak, self._count())
            except Exception:  # Asterisk busy for a moment: the next sample counts
                pass

    def __enter__(self) -> "PeakChannels":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def wait_no_channels(count_channels: Callable[[], int], timeout: float) -> int:
    """Asterisk's channel count once it is 0, or after `timeout` s (the last hangups take a moment)."""
    deadline = time.monotonic() + timeout
    count = count_channels()
    while count and time.monotonic() < deadline:
        time.sleep(0.5)
        count = count_channels()
    return count


def place_calls(script: Script, *, calls: int, rate: float, target: str, service: str,
                count_channels: Callable[[], int], recent: Callable[[int], list[dict]],
                **call_args) -> dict:
    """Place `calls` calls and report: SIPp's counts, the peak and final channel counts, and
    the new calls recorded (outcomes and scene paths). On a live hotline, only new calls from
    the script's caller ID count: other callers' calls are not these."""
    number = call_args.get("caller") or script.caller
    masked = mask_phone(number) if number else None
    before = {c["call_id"] for c in recent(calls + 100)}
    started = time.monotonic()
    with PeakChannels(count_channels) as peak:
        result = sipp.run(script, target=target, service=service, calls=calls, rate=rate, **call_args)
    wall = time.monotonic() - started
    deadline = time.monotonic() + RECORD_WAIT
    while True:
        new = [c for c in recent(calls + 100)
               if c["call_id"] not in before and (masked is None or c["caller"] == masked)]
        ended = [c for c in new if c["outcome"]]
        if len(ended) >= calls or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    left = wait_no_channels(count_channels, 10)
    stats = result.stats()
    return {
        "calls": calls, "rate": rate, "wall_s": round(wall, 1), "sipp_exit": result.returncode,
        "sipp": stats, "peak_channels": peak.peak, "channels_left": left,
        "recorded": len(new), "ended": len(ended),
        "outcomes": dict(Counter(c["outcome"] or "in progress" for c in new)),
        "paths": dict(Counter(" > ".join(c["scenes"] or []) for c in new).most_common(5)),
        "ok": (result.ok and len(ended) == calls and left == 0),
        "workdir": str(result.workdir),
    }


def describe(report: dict) -> str:
    sipp_counts = report["sipp"]
    lines = [f"{report['calls']} calls placed at {report['rate']:g}/s in {report['wall_s']} s: "
             f"SIPp {sipp_counts.get('successful', '?')} successful, {sipp_counts.get('failed', '?')} failed, "
             f"{sipp_counts.get('retransmissions', '?')} retransmissions",
             f"peak Asterisk channels: {report['peak_channels']} (a call that can speak also has its "
             f"audio fork's channels); channels left: {report['channels_left']}",
             f"recorded: {report['recorded']} new calls, {report['ended']} ended"]
    lines += [f"  outcome {name}: {count}" for name, count in report["outcomes"].items()]
    lines += [f"  path {path or '(none)'}: {count}" for path, count in report["paths"].items()]
    lines.append("ok" if report["ok"] else f"NOT ok (SIPp's files: {report['workdir']})")
    return "\n".join(lines)
