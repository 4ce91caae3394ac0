"""`ivr bench agi_cpu --json`: where the FastAGI controller's CPU per call goes, without Asterisk.

A fake Asterisk (this process) opens FastAGI sessions and answers every command as Asterisk
would (a STREAM FILE after `--play` seconds, WAIT FOR DIGIT with "1"), to the bare panoramisk
handler of `ivr bench calls` (tests/bench/bare_agi.py) and to our controller run with parts of
it switched off: everything, no call store, and none of the store, the caller history and SMS.
Each handler is its own process; its CPU per call comes from /proc. The flow set is the call
benchmark's (tests/bench/flows_calls/), with prompts rendered by espeak-ng into a temp folder.

This finds where the time goes; `ivr bench calls` (real SIP through Asterisk) is the figure.

Options: --calls 200  --rate 20 (sessions started per second)  --play 0.3
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_calls import _bench_config, _cpu_seconds, _machine  # noqa: E402

VARIANTS = {"all": "", "no_store": "store", "no_store_history_sms": "store,history,sms"}


async def _serve(port: int, off: set[str], work: Path) -> None:
    """Our controller, as `ivr serve` wires it, minus AMI (no Asterisk) and minus `off`."""
    from ivr.app import Hotline, build_router, build_services, build_sms, flow_repository, open_history
    from ivr.config import load_config
    from ivr.speech.prompts import PromptCache
    from ivr.speech.tts import EspeakSynthesizer
    from ivr.speech.voices import prerender_items
    from ivr.store.calls import CallStore
    from ivr.telephony.agi import FastAgiServer

    config = load_config(str(_bench_config(work)))
    repo = flow_repository(config)
    repo.load()
    router = build_router(config)
    history = None if "history" in off else await asyncio.to_thread(open_history, config, seed=True)
    sms = build_sms(config, config.var_dir / "ivr.db")
    services = dataclasses.replace(build_services(config, router=router, history=history), sms=sms)
    prompts = PromptCache(work / "prompts", EspeakSynthesizer())
    await prompts.prerender(prerender_items(repo.current, repo.paths[0]))
    store = None if "store" in off else CallStore(config.var_dir / "ivr.db")
    hotline = Hotline(config, repo, services, store=store, prompts=prompts, history=history)
    if "sms" not in off:
        hotline.call_ended.append(sms.call_ended)
    await FastAgiServer(hotline, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


async def _session(port: int, script: str, i: int, play: float) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    env = {"agi_network": "yes", "agi_network_script": script, "agi_request": f"agi://127.0.0.1/{script}",
           "agi_channel": f"PJSIP/loopback-{i:08x}", "agi_uniqueid": f"1700000000.{i}",
           "agi_callerid": "+15550199999", "agi_context": "ivr", "agi_extension": "95511",
           "agi_arg_1": f"{time.time():.6f}"}
    writer.write("".join(f"{k}: {v}\n" for k, v in env.items()).encode() + b"\n")
    commands = 0
    while line := (await reader.readline()).decode().strip():
        commands += 1
        if line.startswith("STREAM FILE"):
            await asyncio.sleep(play)
            writer.write(b"200 result=0 endpos=80000\n")
        elif line.startswith("WAIT FOR DIGIT"):
            await asyncio.sleep(0.1)
            writer.write(b"200 result=49\n")
        else:
            writer.write(b"200 result=1\n")
        await writer.drain()
        if line.startswith("HANGUP") or "IVR_ACTION" in line:  # the call is handed back
            break
    writer.close()
    return commands


def _measure(argv: list[str], script: str, port: int, args) -> dict:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    try:
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{argv} did not start")
        time.sleep(1.0)
        before = _cpu_seconds(proc.pid)

        async def all_sessions():
            tasks = []
            for i in range(args.calls):
                tasks.append(asyncio.create_task(_session(port, script, i, args.play)))
                await asyncio.sleep(1 / args.rate)
            return await asyncio.gather(*tasks)

        commands = asyncio.run(all_sessions())
        time.sleep(1.0)  # the store's last group commit
        used = _cpu_seconds(proc.pid) - before
    finally:
        proc.terminate()
        proc.wait(10)
    return {"cpu_ms_per_call": round(used / args.calls * 1000, 2),
            "agi_commands_per_call": round(sum(commands) / len(commands), 1)}


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="ivr bench agi_cpu")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--play", type=float, default=0.3)
    parser.add_argument("--json", action="store_true", help="accepted; the output is always JSON")
    args = parser.parse_args(argv)
    port = 15500 + os.getpid() % 400
    results = {"bare": _measure([sys.executable, str(ROOT / "tests/bench/bare_agi.py"), str(port), "/a", "/b", "/c"],
                                "bare", port, args)}
    for name, off in VARIANTS.items():
        work = Path(tempfile.mkdtemp(prefix="ivr-bench-agi-"))
        results[name] = _measure([sys.executable, __file__, "--serve", str(port), off, str(work)],
                                 "hotline", port, args)
    bare = results["bare"]["cpu_ms_per_call"] or None
    return {"machine": _machine(), "calls": args.calls, "handlers": results,
            "ratio_to_bare": {k: round(v["cpu_ms_per_call"] / bare, 2) for k, v in results.items()} if bare else None}


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        asyncio.run(_serve(int(sys.argv[2]), set(filter(None, sys.argv[3].split(","))), Path(sys.argv[4])))
    else:
        import json

        print(json.dumps(main(sys.argv[1:]), indent=2))
