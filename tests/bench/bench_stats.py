"""Analytics benchmark: `ivr bench stats --json` (or `python tests/bench/bench_stats.py`).

Simulates the demo scripts (flows/tests/, keyword router, demo customers) into a call store,
copies those calls into a store with the real schema until it holds --calls calls (default
100,000), spread over the last 30 days, and times `ivr.store.stats.compute` on it: all calls,
and the last 7 days (`since`). Median of --runs runs. Nothing is hard-coded.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


async def _simulate(path: Path) -> int:
    from ivr.app import build_services, flow_repository
    from ivr.config import load_config
    from ivr.nlu.router import IntentRouter
    from ivr.sim import parse_script, simulate
    from ivr.store import CallStore

    config = load_config(str(REPO / "config.yaml"))
    flows = flow_repository(config).load()
    router = IntentRouter(None)
    n = 0
    with CallStore(path, channel="sim") as store:
        for script_path in sorted(glob.glob(str(REPO / "flows" / "tests" / "**" / "*.yaml"), recursive=True)):
            script = parse_script(script_path)
            now = (lambda at=script.at: datetime.fromisoformat(at)) if script.at else None
            services = build_services(config, router=router, flags=script.flags, now=now)
            await simulate(flows, services, script, recorder=store)
            n += 1
        store.flush(60)
    return n


def _copy(src: Path, dst: Path, calls: int) -> None:
    from ivr.store import connect, migrate

    db = connect(dst)
    migrate(db)
    db.close()
    conn = sqlite3.connect(dst)
    conn.execute("ATTACH DATABASE ? AS src", [str(src)])
    base = conn.execute("SELECT COUNT(*) FROM src.calls").fetchone()[0]
    copies = -(-calls // base)
    now = datetime.now(timezone.utc)
    conn.execute("BEGIN")
    cols = ("caller, caller_hash, lang, flow_version, channel, started_at, ended_at, duration, outcome,"
            " ended_by, transfer_queue, transfer_reason, escalation, verified, last_scene, scenes,"
            " event_count")
    for i in range(copies):
        # copy i starts (i % 30) days and (i % 24) hours back from now
        at = (now - timedelta(days=i % 30, hours=i % 24)).isoformat(timespec="milliseconds")
        conn.execute(f"INSERT INTO calls(id, {cols}) SELECT id || '-' || ?, "
                     + cols.replace("started_at", "?") + " FROM src.calls", [i, at])
        conn.execute("INSERT INTO events(call_id, seq, t, type, data)"
                     " SELECT call_id || '-' || ?, seq, t, type, data FROM src.events", [i])
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="ivr bench stats")
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--step-index", action="store_true",
                        help="add the index ivr.store.stats.STEP_INDEX describes first")
    args, _ = parser.parse_known_args(argv)  # `ivr bench stats --json` passes --json on
    from ivr.store.stats import compute

    with tempfile.TemporaryDirectory(prefix="bench-stats-") as tmp:
        src, dst = Path(tmp) / "sim.db", Path(tmp) / "many.db"
        scripts = asyncio.run(_simulate(src))
        _copy(src, dst, args.calls)
        conn = sqlite3.connect(dst)
        if args.step_index:
            conn.execute("CREATE INDEX idx_events_step ON events(json_extract(data, '$.scene'),"
                         " json_extract(data, '$.id'), json_extract(data, '$.kind')) WHERE type = 'step'")
            conn.commit()
        calls, events = (conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("calls", "events"))
        conn.close()
        week = (datetime.now(timezone.utc) - timedelta(days=7)).date().isoformat()
        timings = {}
        for name, since in (("all", None), ("last_7_days", week)):
            runs = []
            for _ in range(args.runs):
                started = time.perf_counter()
                result = compute(dst, since=since, tz="Asia/Shanghai")
                runs.append(time.perf_counter() - started)
            timings[name] = {"calls": result["calls"], "median_s": round(statistics.median(runs), 3),
                             "max_s": round(max(runs), 3)}
        size = dst.stat().st_size
    return {"step_index": args.step_index, "scripts": scripts, "calls": calls, "events": events, "db_mb": round(size / 1e6, 1),
            "compute": timings}


if __name__ == "__main__":
    import json

    print(json.dumps(main(sys.argv[1:]), indent=2))
