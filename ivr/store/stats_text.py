"""`ivr stats` as text: a readable summary of `ivr.store.stats.compute`'s figures."""

from __future__ import annotations

import logging
from typing import Any

_LOGGER = logging.getLogger(__name__)

TOP_STEPS = 10


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def report(s: dict[str, Any], top: int = TOP_STEPS) -> str:
    out: list[str] = []
    add = out.append
    window = f"since {s['since']}" if s["since"] else "all calls"
    add(f"Calls ({window}, times in {s['timezone']}): {s['calls']}, ended {s['ended']}, "
        f"in progress {s['in_progress']}")
    outcomes = ", ".join(f"{k} {v}" for k, v in s["outcomes"].items()) or "-"
    add(f"  outcomes: {outcomes}")
    add(f"  abandoned (caller hung up within {s['abandon_seconds']:g} s): {s['abandoned']}")
    add(f"  containment (not transferred to a human): {pct(s['containment'])} "
        f"({s['contained']} calls); resolved by the IVR: {pct(s['resolved_rate'])}")
    add(f"  average handle time: {secs(s['average_handle_time'])}")
    add("Transfers by reason:")
    for r in s["transfer_reasons"] or [{"reason": "-", "count": 0, "share": None}]:
        add(f"  {r['reason']:<28} {r['count']:>7}  {pct(r['share'])}")
    add("Transfers by queue:")
    for r in s["transfer_queues"] or [{"queue": "-", "count": 0, "share": None}]:
        add(f"  {r['queue']:<28} {r['count']:>7}  {pct(r['share'])}")
    troubled = [r for r in s["steps"] if r["no_input"] or r["no_match"]][:top]
    add(f"Steps with no-input / no-match (top {top}; rate = per entry):")
    if not troubled:
        add("  -")
    for r in troubled:
        entered = "-" if r["entered"] is None else r["entered"]
        add(f"  {r['scene'] + '.' + r['step']:<34} entered {entered:>6}  no-input {r['no_input']:>5} "
            f"({pct(r['no_input_rate'])})  no-match {r['no_match']:>5} ({pct(r['no_match_rate'])})")
    add("Scene funnels (calls): entered / resolved / transferred / escalated from / dropped / passed on")
    if not s["funnels"]:
        add("  -")
    for f in s["funnels"]:
        add(f"  {f['scene']:<20} {f['entered']:>7} {f['resolved']:>7} {f['transferred']:>7} "
            f"{f['escalated']:>7} {f['dropped']:>7} {f['passed_on']:>7}")
    p = s["proactive"]
    add(f"Proactive questions: asked {p['asked']}, accepted {p['accepted']}, declined {p['declined']}, "
        f"unanswered {p['unanswered']}; acceptance {pct(p['acceptance_rate'])}, "
        f"precision {pct(p['precision'])}")
    for d in p["by_prediction"]:
        add(f"  {d['prediction']:<20} asked {d['asked']:>6}  accepted {d['accepted']:>6}  "
            f"acceptance {pct(d['acceptance_rate'])}  precision {pct(d['precision'])}")
    busiest = max(s["calls_per_hour"], key=lambda h: h["calls"], default=None)
    if s["calls_per_day"]:
        add(f"Days: {len(s['calls_per_day'])} ({s['calls_per_day'][0]['day']} .. "
            f"{s['calls_per_day'][-1]['day']}); busiest hour {busiest['hour']:02d}:00 "
            f"({busiest['calls']} calls)")
    return "\n".join(out)
