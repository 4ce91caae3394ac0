"""`ivr bench visual --json`: the visual page, measured on real calls through the ARI controller.

It stops the hotline, brings it up with the ARI controller, a flow set of its own
(tests/bench/flows_visual/: the page's link at call start, then a long menu and a short menu
that lead to each other) and a fresh store holding one imported customer, and places --calls
concurrent SIPp calls from that customer; the caller only listens. Each call's link is taken
from the SMS outbox and opened by an aiohttp client as a browser would (visual_pages.py); that
page verifies with the date of birth over the first menu, then taps the menus (a random
option after a random delay: over the long menu's prompt, or while the short menu listens)
until the end. More pages then join the same visits (several websockets per visit cookie, as
several tabs would) up to each level of --pages, and each level is measured for --window s.

Figures:
  event_to_page_ms   server publish time (`at` in the feed's messages) to the page's receipt
  tap_to_prompt_ms   the tap sent -> the reply's prompt event received by the page ("You chose
                     ..."; the engine publishes it right before the ARI play request), its
                     publish time, and Asterisk's PlaybackStarted of it (an observer ARI app)
  verify_ms          the verification POST sent -> `verified` event, the call's "Thank you, you
                     are verified." prompt event and its PlaybackStarted
  levels             per page level: event_to_page and tap_to_prompt p95, controller, Asterisk
                     and this process's CPU (cores), messages per second
Pages are aiohttp clients, not browsers: a headless browser per page would measure Chromium.
Options: --calls 20  --pages 20,50,100,200,500,1000  --window 25  --quick (10 calls, pages 10,50, 12 s)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_calls import TICK, _asterisk_pid, _cpu_seconds, _machine, _pct, _sipp_stats, _wait_idle  # noqa: E402
from visual_pages import AriObserver, Driver, Page, PageError, open_visit  # noqa: E402

from ivr.config import load_config  # noqa: E402
from ivr.sim import Script  # noqa: E402
from ivr.telephony import sipp  # noqa: E402
from ivr.telephony.asterisk import SOUNDS_DIR, AsteriskHost, load_secrets  # noqa: E402

IVR = [sys.executable, "-m", "ivr"]
FLOWS = ROOT / "tests" / "bench" / "flows_visual"
CUSTOMER = {"phone": "+15550188001", "name": "Bench Visual", "lang": "en", "birth_date": "1970-01-01",
            "policies": [{"number": "P880001", "product": "home", "status": "active", "renewal_due": "2027-05-01"}]}
TARGETS = {"event_to_page_p95_ms": 300, "tap_to_prompt_p95_ms": 300, "verify_p95_ms": 1000}
REPLIES = ["You chose billing.", "You chose support.", "You chose hang up.", "Thank you, you are verified."]


def _bench_config(work: Path) -> Path:
    data = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    data["flows"].update({"dir": str(FLOWS), "reload": False})
    data["router"] = {"backend": "keywords"}  # keypad and taps only: no model to load
    data["paths"] = {"var_dir": str(work / "var"), "dialplans": str(ROOT / "dialplans")}
    data["telephony"]["controller"] = "ari"
    data["speech"]["enabled"] = False  # no audio fork per call: the page is what is measured
    data.setdefault("history", {})["seed_demo"] = False  # one customer, imported below
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def _busy_cores_seconds() -> float:
    """CPU time used by the whole machine so far (all cores, seconds), from /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq = (
        int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8])
    return (user + nice + system + irq + softirq) / TICK  # not steal: time the VM did not get


class CpuMeter:
    """CPU of the controller, Asterisk, this process and everything else over a window."""

    def __init__(self, controller: int, asterisk: int) -> None:
        self.pids = {"controller": controller, "asterisk": asterisk}

    def sample(self) -> dict:
        values = {name: _cpu_seconds(pid) for name, pid in self.pids.items()}
        values["bench_pages"] = time.process_time()
        values["all"] = _busy_cores_seconds()
        values["wall"] = time.monotonic()
        return values

    @staticmethod
    def cores(before: dict, after: dict) -> dict:
        wall = after["wall"] - before["wall"]
        used = {k: (after[k] - before[k]) / wall for k in before if k != "wall"}
        # the rest, floored at 0: clock-tick rounding can make it slightly negative
        used["other_processes"] = max(0.0, used["all"] - used["controller"] - used["asterisk"] - used["bench_pages"])
        return {k + "_cpu_cores": round(v, 3) for k, v in used.items() if k != "all"}


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _stats(values: list[float]) -> dict:
    return {"p50": _pct(values, 0.5), "p95": _pct(values, 0.95), "max": _pct(values, 1.0), "n": len(values)}


def _links(store: Path, seen: set[str]) -> list[dict]:
    from ivr.sms.outbox import read_outbox

    try:
        return [m for m in read_outbox(store, 1000)
                if m["purpose"] == "visual" and m["url"] and m["call_id"] not in seen]
    except (sqlite3.Error, OSError):  # busy, or not there yet: the next poll tries again
        return []


def _prompt_seconds(config, host, texts: list[str]) -> dict:
    """Render the replies the taps get (as the first call to say them would) and give every
    measured prompt's length: the reply prompts are then cached, as on a hotline in use."""
    from ivr.speech.prompts import PromptCache
    from ivr.speech.voices import build_synthesizer

    cache = PromptCache(host.host_path(SOUNDS_DIR) / "cache", build_synthesizer(config.speech))
    out = {}
    for text in texts:
        base = asyncio.run(cache.render(text, "en"))
        out[text] = round(base.with_name(base.name + ".sln16").stat().st_size / 32000, 2)
    return out


async def _run(args, config, pids: dict) -> dict:
    base = config.web.public_url
    store = config.var_dir / "ivr.db"
    tel = config.telephony
    rng = random.Random(args.seed)
    observer = AriObserver(tel.bind, tel.http_port, "ivr", load_secrets(config.var_dir)["ARI_SECRET"])
    observing = asyncio.create_task(observer.run())
    async with asyncio.timeout(15):
        await observer.connected.wait()
    # long enough for every level, then the pages hang up (a call that is still up is cut by SIPp)
    call_seconds = int(60 + len(args.levels) * (args.window + 20))
    placed: dict = {}

    def place() -> None:  # a daemon thread: a failed run must not wait for SIPp to give up
        placed["result"] = sipp.run(
            Script("visual-bench", [], caller=CUSTOMER["phone"]), target=f"{tel.bind}:{tel.sip_port}",
            service=tel.extension, caller=CUSTOMER["phone"], calls=args.calls, rate=5.0, answer_wait_ms=0,
            end_wait_ms=call_seconds * 1000, timeout=call_seconds + 120)

    placing = threading.Thread(target=place, name="sipp", daemon=True)
    placing.start()
    sink: list = [[]]  # page delays go to sink[0]; swapped per window
    window = ["setup"]
    visits, pages, drivers, following = [], [], [], []
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while len(visits) < args.calls and time.monotonic() < deadline:
        if not placing.is_alive():
            result = placed.get("result")
            raise PageError("SIPp ended before the calls texted their links: "
                            + (f"exit {result.returncode}, see {result.workdir}" if result else "it failed"))
        for sms in await asyncio.to_thread(_links, store, seen):
            seen.add(sms["call_id"])
            visit = await open_visit(base, sms["url"], sms["call_id"])
            page = Page(visit, sink, driving=True)
            await page.connect()
            visits.append(visit)
            pages.append(page)
            following.append(asyncio.create_task(page.follow()))
            driver = Driver(page, window, random.Random(rng.random()))
            drivers.append((driver, asyncio.create_task(driver.run())))
        await asyncio.sleep(0.2)
    if len(visits) < args.calls:
        raise PageError(f"only {len(visits)} of {args.calls} calls texted a link within 60 s")
    meter = CpuMeter(pids["controller"], pids["asterisk"])
    levels = []
    for level in args.levels:
        while len(pages) < level:  # more tabs on the same visits, round robin over the calls
            page = Page(visits[len(pages) % len(visits)], sink)
            await page.connect()
            pages.append(page)
            following.append(asyncio.create_task(page.follow()))
        await asyncio.sleep(2.0)  # the connections settle
        sink[0], window[0] = [], f"pages={level}"
        messages0 = sum(p.messages for p in pages)
        before = meter.sample()
        await asyncio.sleep(args.window)
        after = meter.sample()
        delays, window[0] = sink[0], "between"
        taps = [s for d, _ in drivers for s in d.taps if s.window == f"pages={level}"]
        levels.append({"pages": level, "calls": len(visits), "seconds": args.window,
                       "event_to_page_ms": _stats(delays),
                       "tap_to_page_ms": _stats([(s.reply.received - s.sent) * 1000 for s in taps]),
                       "messages_per_s": round((sum(p.messages for p in pages) - messages0) / args.window, 1),
                       "pages_ended_early": sum(p.ended for p in pages),
                       "controller_rss_mb": _rss_mb(pids["controller"]),
                       **CpuMeter.cores(before, after)})
    for driver, _ in drivers:
        driver.stop.set()
    await asyncio.wait([t for _, t in drivers], timeout=60)
    for page in pages:
        await page.close()
    await asyncio.gather(*following, return_exceptions=True)
    for visit in visits:
        await visit.http.close()
    await asyncio.to_thread(placing.join, 120)
    result = placed.get("result")
    observing.cancel()
    await asyncio.gather(observing, return_exceptions=True)
    return {"levels": levels, "drivers": [d for d, _ in drivers], "observer": observer, "sipp": result}


def _figures(run: dict) -> dict:
    drivers, observer = run["drivers"], run["observer"]
    first = run["levels"][0]
    taps = [s for d in drivers for s in d.taps if s.window == f"pages={first['pages']}"]
    for s in taps:
        s.playback = observer.playback_after(s.call_id, s.reply.at)

    def tap_block(samples):
        played = [s for s in samples if s.playback]
        return {"to_page_ms": _stats([(s.reply.received - s.sent) * 1000 for s in samples]),
                "to_publish_ms": _stats([(s.reply.at - s.sent) * 1000 for s in samples]),
                "to_playback_started_ms": _stats([(s.playback[0] - s.sent) * 1000 for s in played])}
    verifies = [d.verify for d in drivers if d.verify and d.verify.spoken]
    for v in verifies:
        v.playback = observer.playback_after(v.call_id, v.spoken.at)
    return {
        "event_to_page_ms": {**first["event_to_page_ms"], "pages": first["pages"], "calls": first["calls"]},
        "tap_to_prompt_ms": {"all": tap_block(taps),
                             "over_the_long_menu_prompt": tap_block([s for s in taps if s.menu == "long"]),
                             "while_the_short_menu_listens": tap_block([s for s in taps if s.menu == "short"]),
                             "pages": first["pages"]},
        "verify_ms": {"to_verified_event": _stats([(v.verified[0] - v.sent) * 1000 for v in verifies]),
                      "to_thank_you_prompt_on_page": _stats([(v.spoken.received - v.sent) * 1000 for v in verifies]),
                      "to_thank_you_playback_started": _stats([(v.playback[0] - v.sent) * 1000
                                                               for v in verifies if v.playback]),
                      "refused": sum(1 for d in drivers if d.verify and d.verify.status != 303)},
    }


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="ivr bench visual")
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--pages", default="20,50,100,200,500,1000")
    parser.add_argument("--window", type=float, default=25.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true", help="accepted; the output is always JSON")
    args = parser.parse_args([a for a in argv if a != "--"])
    if args.quick:
        args.calls, args.pages, args.window = 10, "10,50", 12.0
    args.levels = sorted({max(args.calls, int(x)) for x in args.pages.split(",")})
    work = Path(tempfile.mkdtemp(prefix="ivr-bench-visual-"))
    cfg_path = _bench_config(work)
    config = load_config(str(cfg_path))
    source = work / "customer.jsonl"
    source.write_text(json.dumps(CUSTOMER) + "\n", encoding="utf-8")
    subprocess.run(IVR + ["--config", str(cfg_path), "history", "import", str(source), "--db",
                          str(config.var_dir / "ivr.db")], cwd=ROOT, check=True, capture_output=True, timeout=120)
    subprocess.run(IVR + ["down"], cwd=ROOT, capture_output=True, timeout=120)
    subprocess.run(IVR + ["--config", str(cfg_path), "up"], cwd=ROOT, check=True, capture_output=True, timeout=600)
    try:
        host = AsteriskHost.locate(config, provision=False)
        # the ready file holds the pid of the process that serves the calls and the pages
        pids = {"controller": int((config.var_dir / "run" / "controller.ready").read_text().split()[0]),
                "asterisk": _asterisk_pid()}
        flows = (FLOWS / "long_menu.yaml").read_text() + (FLOWS / "short_menu.yaml").read_text()
        menus = [t.split('"', 1)[0] for t in flows.split('en: "')[1:] if t.startswith(("This is", "Press 1, 2"))]
        seconds = _prompt_seconds(config, host, menus + REPLIES)
        started = time.monotonic()
        run = asyncio.run(_run(args, config, pids))
        elapsed = time.monotonic() - started
        leftover = _wait_idle(host, 30)
    finally:
        subprocess.run(IVR + ["--config", str(cfg_path), "down"], cwd=ROOT, capture_output=True, timeout=120)
    figures = _figures(run)
    stats = _sipp_summary(run["sipp"])
    p95 = {"event_to_page": figures["event_to_page_ms"]["p95"],
           "tap_to_prompt_on_page": figures["tap_to_prompt_ms"]["all"]["to_page_ms"]["p95"],
           "tap_to_playback_started": figures["tap_to_prompt_ms"]["all"]["to_playback_started_ms"]["p95"],
           "verify_to_thank_you_playback": figures["verify_ms"]["to_thank_you_playback_started"]["p95"]}
    below = lambda v, limit: v is not None and v < limit  # noqa: E731
    return {
        "machine": _machine(),
        "controller": "ari",
        **figures,
        "levels": run["levels"],
        "prompt_seconds": seconds,
        "calls": {"placed": args.calls, **stats, "channels_left": leftover, "run_seconds": round(elapsed, 1),
                  "driver_errors": [e for d in run["drivers"] for e in d.errors][:10]},
        "targets": TARGETS,
        "pass": {"event_to_page": below(p95["event_to_page"], 300),
                 "tap_to_prompt_on_page": below(p95["tap_to_prompt_on_page"], 300),
                 "tap_to_playback_started": below(p95["tap_to_playback_started"], 300),
                 "verify": below(p95["verify_to_thank_you_playback"], 1000),
                 "every_level_event_to_page": all(below(lv["event_to_page_ms"]["p95"], 300) for lv in run["levels"])},
        "notes": [
            "Pages are aiohttp websocket clients in this benchmark's process, one per page; a headless "
            "browser per page would measure Chromium, not the hotline. Several pages of one call share "
            "its visit cookie, as tabs would (one SMS link per call, single-use).",
            "event_to_page: the feed's `at` (server wall clock when the call published the event) to the "
            "page's receipt; both processes on this box.",
            "tap_to_prompt: from sending the tap on the websocket; to_publish = the reply's prompt event "
            "(published right before the ARI play request), to_page = its arrival on the page, "
            "to_playback_started = Asterisk's PlaybackStarted timestamp (ms resolution) of that reply, "
            "seen by an observer ARI app with subscribeAll. Measured at the first level (one page per call).",
            "verify: from sending POST /v/verify to the `verified` event, the call's 'Thank you, you "
            "are verified.' prompt event and its PlaybackStarted. One per call, all at the start.",
            "levels: more pages join the calls' visits (one websocket each, all following at once); "
            "the server's work per page (a subscriber, a queue, a websocket) is the same whether or not "
            "pages share a visit. The pages' drivers tap every few seconds, far more often than a caller "
            "would, so the message rates are high for the number of calls. `at` is taken per page as "
            "the event is published, so building one message per page during a publish is not in "
            "event_to_page; tap_to_page (per level) includes everything.",
            "CPU figures are cores (1.0 = one core busy) over each window; bench_pages is this process "
            "(the pages); other_processes is everything else on the box (compare runs only when it is low).",
        ],
    }


def _sipp_summary(result) -> dict:
    if result is None:
        return {"sipp_exit": None}
    return {**_sipp_stats(result.workdir), "sipp_exit": result.returncode}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=2))
