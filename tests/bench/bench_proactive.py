"""Proactive-prompt benchmark: `ivr bench proactive --json`.

What it measures: how much the welcome scene's proactive question saves, over the demo
population (`ivr demo-data`, 1,000 customers imported into a fresh SQLite store).

Every customer calls once with a goal. A customer with an open matter (an open claim, a bill
due, a renewal due: the facts the welcome's rules test) calls about it 80% of the time and about
something else otherwise; one without calls about a random scene. Each call is made twice by
the same goal-directed caller, once with proactive prompts on and once off (the admin flag
`proactive.off`), in simulated time (ARCHITECTURE.md section 4: prompts at their spoken length,
0.3 s a key). The caller answers the proactive question yes when it names their goal and no
otherwise, uses the keypad menus, keys in the claim number, card digits and date of birth, and
says no to "anything else?". Nothing is hard-coded: every figure comes from the engine's events.

Figures: call length and turns (caller inputs) to resolution, on vs off, for
  returning callers with an open matter whose prediction was right   target >= 30% shorter
  callers whose prediction was wrong (asked, answered no)            target <= 5% longer
plus precision (share of questions that were right), acceptance, and the profile load time.
Options: --customers N (default 1000), --seed N, --quick (300 customers).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import date, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ivr import events as ev  # noqa: E402
from ivr.app import build_services, flow_repository, open_history  # noqa: E402
from ivr.config import load_config  # noqa: E402
from ivr.data.population import population  # noqa: E402
from ivr.errors import CallerHangup  # noqa: E402
from ivr.flow.channel import TIMEOUT, CallerInput, ListenSpec, PromptOut  # noqa: E402
from ivr.flow.engine import CallRunner  # noqa: E402
from ivr.flow.prompts import spoken_seconds  # noqa: E402
from ivr.nlu.router import IntentRouter  # noqa: E402
from ivr.store.history_import import import_records  # noqa: E402

TODAY = date(2026, 12, 4)
CALL_AT = datetime(2026, 12, 4, 10, 0)
KEY_SECONDS = 0.3
# keypad path from the main menu to each goal (main menu key, sub-menu key)
MENU_PATH = {"claim_status": "11", "premium_payment": "22", "policy_query": "21",
             "card_bill": "31", "card_lost": "32"}
# what a caller recognises in the proactive question, per goal
QUESTION_WORDS = {"claim_status": ("claim", "理赔"), "card_bill": ("bill", "账单"),
                  "premium_payment": ("renew", "续保")}
MATTERS = (("open_claim", "claim_status"), ("bill_due", "card_bill"), ("renewal_due", "premium_payment"))


class GoalCaller:
    """A Channel whose caller pursues one goal, in simulated time."""

    def __init__(self, goal: str, customer: dict) -> None:
        self.goal = goal
        self.customer = customer
        self.t = 0.0
        self.inputs = 0
        self.where = ("", "", "")  # scene, step id, kind (from the call's step events)
        self.last_prompt = ""
        self.menu_keys = list(MENU_PATH.get(goal, "11"))

    def on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.Step):
            self.where = (event.scene, event.id, event.kind)

    def clock(self) -> float:
        return self.t

    async def play(self, prompt: PromptOut) -> CallerInput | None:
        self.t += spoken_seconds(prompt.text)
        self.last_prompt = prompt.text
        return None

    async def listen(self, spec: ListenSpec) -> CallerInput:
        if self.inputs >= 40:
            raise CallerHangup()  # lost: a real caller would have given up long ago
        keys = self._answer(spec)
        if keys is None:
            self.t += spec.timeout
            return TIMEOUT
        self.inputs += 1
        self.t += KEY_SECONDS * len(keys)
        return CallerInput("dtmf", keys)

    def _answer(self, spec: ListenSpec) -> str | None:
        scene, step, kind = self.where
        c = self.customer
        if "birth" in self.last_prompt or "出生" in self.last_prompt:  # verification, asked by the engine
            return c["birth_date"].replace("-", "")
        if kind == "proactive":
            words = QUESTION_WORDS.get(self.goal, ())
            return "1" if any(w in self.last_prompt.lower() for w in words) else "2"
        if kind == "menu":
            return self.menu_keys.pop(0) if self.menu_keys else "9"
        if kind == "ask" and step.startswith("claim_no"):
            claims = [x for x in c["claims"] if x["status"] in ("reported", "under_review", "approved")]
            return (claims or c["claims"] or [{"number": "20260000"}])[0]["number"]
        if kind == "ask" and "last4" in step:
            return (c["cards"] or [{"last4": "0000"}])[0]["last4"]
        if kind == "confirm":
            return "2" if scene in ("anything_else", "card_bill", "claim_status") else "1"
        return None

    async def transfer(self, queue: str, context: dict) -> None:
        pass

    async def hangup(self) -> None:
        pass


def _matters(profile: dict) -> list[str]:
    return [scene for fact, scene in MATTERS if profile.get(fact)]


async def _call(flows, services, customer: dict, goal: str, proactive: bool) -> dict:
    caller = GoalCaller(goal, customer)
    flags = services.flags
    flags.set("proactive.off", None if proactive else "1")
    runner = CallRunner(flows, caller, services, caller=customer["phone"])
    runner.stream.subscribe(caller.on_event)
    await runner.run()
    events = runner.stream.history
    scenes = [e.id for e in events if isinstance(e, ev.Scene)]
    asked = [e for e in events if isinstance(e, ev.Proactive)]
    question = next((e.t for e in events if isinstance(e, ev.Prompt) and e.step.endswith("likely_reason")), None)
    return {"question_seconds": round(asked[0].t - question, 2) if asked and question is not None else 0.0,"t": events[-1].t if events else 0.0, "turns": caller.inputs, "reached": goal in scenes,
            "asked": asked[0].scene if asked else None, "accepted": asked[0].accepted if asked else None,
            "outcome": runner.state.outcome}


def _summary(pairs: list[tuple[dict, dict]]) -> dict:
    if not pairs:
        return {"calls": 0}
    on = [p[0]["t"] for p in pairs]
    off = [p[1]["t"] for p in pairs]
    mean_on, mean_off = statistics.fmean(on), statistics.fmean(off)
    return {"calls": len(pairs), "seconds_on": round(mean_on, 1), "seconds_off": round(mean_off, 1),
            "change": round(mean_on / mean_off - 1, 3),
            "turns_on": round(statistics.fmean(p[0]["turns"] for p in pairs), 2),
            "turns_off": round(statistics.fmean(p[1]["turns"] for p in pairs), 2),
            # the question and its answer alone, before the brief menu a "no" leads to wins some back
            "question_seconds": round(statistics.fmean(p[0]["question_seconds"] for p in pairs), 1)}


async def run(customers: int, seed: int) -> dict:
    config = load_config(None)
    flows = flow_repository(config).load()
    with tempfile.TemporaryDirectory(prefix="ivr-bench-proactive-") as tmp:
        db = Path(tmp) / "ivr.db"
        t0 = time.perf_counter()
        records = list(population(customers, seed=seed, today=TODAY))
        report = import_records(records, db, name="demo-data")
        import_s = time.perf_counter() - t0
        history = open_history(config, db)
        history.set_clock(lambda: CALL_AT)
        services = build_services(config, router=IntentRouter(None), now=lambda: CALL_AT, history=history)
        rng = random.Random(seed)
        loads, rows = [], []
        for record in records:
            t = time.perf_counter()
            profile = history.profile_now(record["phone"])
            loads.append((time.perf_counter() - t) * 1000)
            matters = _matters(profile)
            if matters and rng.random() < 0.8:
                goal = matters[0] if len(matters) == 1 else rng.choice(matters)
            else:
                goal = rng.choice(sorted(MENU_PATH))
            on = await _call(flows, services, record, goal, proactive=True)
            off = await _call(flows, services, record, goal, proactive=False)
            rows.append((bool(matters), goal, on, off))
        await history.drain()
        history.close()
    asked = [r for r in rows if r[2]["asked"]]
    right = [r for r in asked if r[2]["asked"] == r[1]]
    wrong = [r for r in asked if r[2]["asked"] != r[1]]
    returning_right = [(r[2], r[3]) for r in right if r[0]]
    loads.sort()
    return {
        "customers": customers, "seed": seed, "imported": report.loaded, "import_seconds": round(import_s, 1),
        "profile_load_ms": {"p50": round(loads[len(loads) // 2], 3), "p95": round(loads[int(len(loads) * .95)], 3),
                            "max": round(loads[-1], 3)},
        "calls_per_mode": len(rows),
        "goal_reached": {"on": sum(r[2]["reached"] for r in rows), "off": sum(r[3]["reached"] for r in rows)},
        "proactive": {"asked": len(asked), "right": len(right), "accepted": sum(bool(r[2]["accepted"]) for r in asked),
                      "precision": round(len(right) / len(asked), 3) if asked else None,
                      "asked_share_of_callers_with_matter": round(
                          len([r for r in asked if r[0]]) / max(1, sum(r[0] for r in rows)), 3)},
        "returning_with_open_matter_prediction_right": {**_summary(returning_right), "target": "change <= -0.30"},
        "prediction_wrong": {**_summary([(r[2], r[3]) for r in wrong]), "target": "change <= +0.05"},
        "no_question_asked": _summary([(r[2], r[3]) for r in rows if not r[2]["asked"]]),
        "all_calls": _summary([(r[2], r[3]) for r in rows]),
    }


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d")}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="ivr bench proactive")
    parser.add_argument("--customers", type=int)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true", help="accepted; the output is always JSON")
    args = parser.parse_args([a for a in (argv or []) if a != "--"])
    customers = args.customers or (300 if args.quick else 1000)
    return {"machine": machine(), **asyncio.run(run(customers, args.seed))}


if __name__ == "__main__":
    import json

    print(json.dumps(main(sys.argv[1:]), indent=2, ensure_ascii=False))
