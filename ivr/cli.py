"""The `ivr` command. Thin: parse arguments, call the package, print results."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from datetime import datetime
from pathlib import Path

from ivr.errors import IvrError

_LOGGER = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ivr", description="On-box AI telephone hotline.")
    parser.add_argument("--config", help="config file (default: config.yaml)")
    parser.add_argument("--debug", action="store_true", help="log details and show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check", help="validate flows and cross-check them with dialplans/")
    p.add_argument("paths", nargs="*", metavar="PATH", help="flow files or folders (default: flows/)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("simulate", help="run a phone-free call from a script of caller actions")
    p.add_argument("scripts", nargs="+", metavar="SCRIPT.yaml")
    p.add_argument("--caller", default="", help="caller ID, e.g. +8613800000001")
    p.add_argument("--lang", choices=("en", "zh"), help="the caller's language")
    p.add_argument("--json", action="store_true", help="one JSON object per event")
    p.add_argument("--flows", action="append", metavar="PATH", help="flow files or folders")
    p.add_argument("--at", help="the call's local time, e.g. 2026-12-03T10:00 (default: now)")
    p.add_argument("--flag", action="append", default=[], metavar="NAME=VALUE", help="an admin flag")
    p.add_argument("--db", metavar="PATH", help="also record the calls in this call store")
    p.add_argument("--audio", action="store_true",
                   help="speak each `say:` with the hotline's voice, at 8 kHz, through the on-box ASR")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("calls", help="show the last calls from the call store")
    p.add_argument("--last", type=int, default=10, metavar="N", help="how many calls (default: 10)")
    p.add_argument("--json", action="store_true", help="one JSON object per call and line")
    p.add_argument("--db", metavar="PATH", help="the store (default: VAR_DIR/ivr.db)")
    p.set_defaults(func=cmd_calls)

    p = sub.add_parser("stats", help="analytics from the call store: containment, transfers, steps, funnels")
    p.add_argument("--since", metavar="DATE", help="only calls started since (ISO date or date/time)")
    p.add_argument("--db", metavar="PATH", help="the store (default: VAR_DIR/ivr.db)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("web", help="serve the web app (admin page) in the foreground")
    p.add_argument("--db", metavar="PATH", help="the store (default: VAR_DIR/ivr.db)")
    p.add_argument("--port", type=int, help="listen here (default: web.port)")
    p.set_defaults(func=cmd_web)

    p = sub.add_parser("history", help="the caller history: import customers, purge old turns, forget a customer")
    hist = p.add_subparsers(dest="history_action", required=True, metavar="ACTION")
    h = hist.add_parser("import", help="load customers from JSON lines (one customer per line)")
    h.add_argument("file", metavar="FILE")
    h.add_argument("--db", metavar="PATH", help="the store (default: VAR_DIR/ivr.db)")
    h.add_argument("--json", action="store_true", help="print the report as JSON")
    h.set_defaults(func=cmd_history_import)
    h = hist.add_parser("purge", help="delete turns and recordings older than the retention period")
    h.add_argument("--days", type=int, help="keep this many days (default: history.retention_days)")
    h.add_argument("--db", metavar="PATH", help="the store (default: VAR_DIR/ivr.db)")
    h.set_defaults(func=cmd_history_purge)
    h = hist.add_parser("forget", help="delete one customer's data, keeping only anonymous aggregates")
    h.add_argument("number", metavar="NUMBER", help="the customer's phone number")
    h.add_argument("--db", metavar="PATH", help="the store (default: VAR_DIR/ivr.db)")
    h.set_defaults(func=cmd_history_forget)

    p = sub.add_parser("sms", help="the text messages the hotline sent")
    p.add_argument("action", choices=("outbox",))
    p.add_argument("--last", type=int, default=20, metavar="N", help="how many (default: 20)")
    p.add_argument("--json", action="store_true", help="one JSON object per message and line")
    p.add_argument("--db", metavar="PATH", help="the store (default: VAR_DIR/ivr.db)")
    p.set_defaults(func=cmd_sms)

    p = sub.add_parser("demo-data", help="seed a synthetic customer population (1,000 by default)")
    p.add_argument("--customers", type=int, default=1000, metavar="N", help="how many (default: 1000)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default: 7)")
    p.add_argument("--db", metavar="PATH", help="import into this store (default: VAR_DIR/ivr.db)")
    p.add_argument("-o", "--output", metavar="FILE", help="write JSON lines here instead of importing")
    p.set_defaults(func=cmd_demo_data)

    for name, text in (("up", "bring up the whole hotline in the background"),
                       ("down", "stop the hotline"), ("status", "say what runs")):
        p = sub.add_parser(name, help=text)
        p.set_defaults(func=cmd_supervise, action=name)

    p = sub.add_parser("call", help="place a real test call to the hotline (SIPp) and print its events")
    p.add_argument("script", metavar="SCRIPT.yaml", help="keys, pauses and hangup, as for `ivr simulate`")
    p.add_argument("--caller", default="", help="caller ID (default: the script's, else anonymous)")
    p.add_argument("--dtmf", choices=("info", "rfc4733"), default="info",
                   help="SIP INFO (default) or RFC 4733 digits from SIPp's pcaps")
    p.add_argument("--gap", type=float, default=3.0, help="seconds the caller listens before each key entry")
    p.add_argument("--wait", type=float, default=20.0, help="seconds to wait for the hotline to hang up at the end")
    p.add_argument("--json", action="store_true", help="print the recorded call as JSON")
    p.add_argument("--db", metavar="PATH", help="the call store (default: var/ivr.db)")
    p.add_argument("--calls", type=int, default=1,
                   help="place this many calls at once (a load check): prints what became of them")
    p.add_argument("--rate", type=float, default=10.0, help="with --calls: call setups per second")
    p.set_defaults(func=cmd_call)

    p = sub.add_parser("models", help="install or list the on-box speech models (voice_models/)")
    p.add_argument("action", choices=("install", "list"))
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("transcribe", help="recognise the speech in a WAV file with the on-box ASR")
    p.add_argument("file", metavar="FILE.wav")
    p.add_argument("--lang", choices=("en", "zh"), default="en", help="the language spoken (default: en)")
    p.add_argument("--json", action="store_true", help="print text, confidence and timing as JSON")
    p.set_defaults(func=cmd_transcribe)

    p = sub.add_parser("say", help="synthesise text with the hotline's voice into a WAV file")
    p.add_argument("text")
    p.add_argument("-o", "--output", required=True, metavar="FILE.wav")
    p.add_argument("--lang", choices=("en", "zh"), default="en", help="the language (default: en)")
    p.add_argument("--rate", type=int, default=8000, help="sample rate of the file (default: 8000, as on a call)")
    p.set_defaults(func=cmd_say)

    p = sub.add_parser("watchdog", help="run the controller and restart it if it dies (`ivr up` starts it)")
    p.set_defaults(func=cmd_watchdog)

    p = sub.add_parser("serve", help="run the controller in the foreground (`ivr up` starts it)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("bench", help="run a benchmark from tests/bench/ and print JSON")
    p.add_argument("name", help="engine, calls, speech, proactive, stats or visual (tests/bench/bench_NAME.py)")
    p.add_argument("--json", action="store_true", help="print JSON (the only format)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="passed to the benchmark")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except IvrError as exc:
        print(f"ivr: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # no traceback reaches a user unless asked for
        if args.debug:
            raise
        print(f"ivr: internal-error: {type(exc).__name__}: {exc} (rerun with --debug for details)",
              file=sys.stderr)
        return 3


def _config(args):
    from ivr.config import load_config

    return load_config(args.config)


def cmd_check(args) -> int:
    from ivr.flow.loader import load_flows

    config = _config(args)
    paths = args.paths or [str(config.resolve(config.flows.dir))]
    result = load_flows(paths, queues_conf=str(config.resolve(config.paths.dialplans) / "queues.conf"))
    for problem in result.problems:
        print(problem)
    if result.flowset is None:
        print(f"{len(result.problems)} error(s)", file=sys.stderr)
        return 1
    fs = result.flowset
    print(f"ok: {len(fs.scenes)} scenes in {len(fs.files)} files, version {fs.version}", file=sys.stderr)
    return 0


def cmd_simulate(args) -> int:
    from ivr.app import build_services, flow_repository
    from ivr.sim import parse_script, simulate

    config = _config(args)
    flows = flow_repository(config, args.flows).load()
    scripts = [parse_script(p) for p in args.scripts]
    failed = 0
    store = history = None
    known_callers = False
    if getattr(args, "db", None):
        from ivr.app import open_history
        from ivr.store import CallStore

        store = CallStore(args.db, channel="sim")
        history = open_history(config, Path(args.db))  # the callers are the store's customers
        known_callers = history.customer_count() > 0
        # messages go to the store's outbox only: a simulated call never texts anyone
        from ivr.sms.gateways import EmbeddedGateway
        from ivr.sms.outbox import SmsOutbox

        sms = SmsOutbox(Path(args.db), EmbeddedGateway(), base_url=config.web.public_url)
        if not known_callers:
            print(f"note: {args.db} has no customers; the demo customers take the calls "
                  "(`ivr demo-data --db` or `ivr history import --db` loads some)", file=sys.stderr)

    hear = None
    if args.audio:
        from ivr.speech.loopback import SpokenLoopback

        hear = SpokenLoopback(config.speech).hear

    async def run_all() -> int:
        nonlocal failed
        for script in scripts:
            flags = dict(f.split("=", 1) for f in args.flag if "=" in f)
            at = script.at or args.at
            now = (lambda: datetime.fromisoformat(at)) if at else None
            if history is not None:
                history.set_clock(now)
            services = build_services(config, flags={**flags, **script.flags}, now=now,
                                      history=history if known_callers else None)
            if history is not None:
                services.predictions = history
                services.sms = sms
            result = await simulate(flows, services, script, caller=args.caller, lang=args.lang,
                                    recorder=store, hear=hear, recorders=[history] if history else [])
            if history is not None:
                await history.drain()  # the next script's caller sees this call in their history
                sms.call_ended(result.state.call_id)  # its links die with the call
                await sms.drain()
            for event in result.events:
                if args.json:
                    print(json.dumps(event.to_dict(), ensure_ascii=False))
                else:
                    print(_human(event))
            if len(scripts) > 1 or result.failures:
                mark = "ok" if result.ok else "FAIL"
                print(f"{mark}: {script.path}", file=sys.stderr)
            for failure in result.failures:
                print(f"  {script.path}: {failure}", file=sys.stderr)
            failed += not result.ok
        return failed

    try:
        asyncio.run(run_all())
    finally:
        if store is not None:
            store.close()
        if history is not None:
            history.close()
    return 1 if failed else 0


def _human(event) -> str:
    d = event.to_dict()
    t, kind = d.pop("t"), d.pop("type")
    if kind == "prompt":
        return f"{t:7.1f}s  IVR   {d['text']}"
    if kind == "input":
        return f"{t:7.1f}s  CALL  [{d['kind']}] {d['value']}"
    rest = " ".join(f"{k}={v}" for k, v in d.items() if v not in (None, "", {}))
    return f"{t:7.1f}s  ----  {kind} {rest}"


def cmd_models(args) -> int:
    from ivr.speech import models

    config = _config(args)
    if args.action == "install":
        report = models.install(config.speech, progress=lambda line: print(line, file=sys.stderr))
    else:
        report = models.listing(config.speech)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(models.format_listing(report))
    return 0 if all(m.get("installed") for m in report["models"] if m.get("required")) else 1


def cmd_transcribe(args) -> int:
    from ivr.speech import asr

    result = asr.transcribe_file(_config(args).speech, args.file, args.lang)
    print(json.dumps(result, ensure_ascii=False) if args.json else result["text"])
    return 0


def cmd_say(args) -> int:
    from ivr.speech import voices

    info = voices.say_to_file(_config(args).speech, args.text, args.lang, args.output, rate=args.rate)
    print(f"{args.output}: {info['seconds']:.2f} s, {info['voice']}", file=sys.stderr)
    return 0


def _store_path(args, config=None) -> Path:
    return Path(args.db) if getattr(args, "db", None) else (config or _config(args)).var_dir / "ivr.db"


def cmd_history_import(args) -> int:
    from ivr.store.history_import import import_file

    if not Path(args.file).is_file():
        raise IvrError(f"{args.file}: no such file", code="import-missing")
    report = import_file(args.file, _store_path(args))
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        for problem in report.problems:
            print(problem)
        print(f"loaded {report.loaded}, unchanged {report.unchanged}, rejected {report.rejected}",
              file=sys.stderr)
    return 1 if report.rejected else 0


def cmd_history_purge(args) -> int:
    from ivr.store.retention import purge
    from ivr.telephony.asterisk import RECORDINGS_DIR, AsteriskHost

    config = _config(args)
    days = config.history.retention_days if args.days is None else args.days
    if days < 1:
        raise IvrError("--days is 1 or more", code="usage")
    recordings = [config.var_dir / "recordings"]
    try:
        recordings.append(AsteriskHost.locate(config, provision=False).host_path(RECORDINGS_DIR))
    except IvrError:
        pass  # no Asterisk here: no call recordings either
    try:
        result = purge(_store_path(args, config), days, recordings)
    except FileNotFoundError:
        raise IvrError(f"no call store at {_store_path(args, config)}", code="store-missing") from None
    print(json.dumps(result))
    return 0


def cmd_history_forget(args) -> int:
    from ivr.store.retention import forget

    try:
        result = forget(_store_path(args), args.number)
    except FileNotFoundError:
        raise IvrError(f"no call store at {_store_path(args)}", code="store-missing") from None
    except ValueError as exc:
        raise IvrError(str(exc), code="usage") from None
    print(json.dumps(result))
    return 0 if result["customers_deleted"] or result["calls_anonymised"] else 1


def cmd_sms(args) -> int:
    from ivr.sms.outbox import read_outbox

    if args.last < 0:
        raise IvrError("--last is a number of messages (0 or more)", code="usage")
    path = _store_path(args)
    try:
        messages = read_outbox(path, args.last)
    except FileNotFoundError:
        raise IvrError(f"no call store at {path}", code="store-missing") from None
    for m in messages:
        if args.json:
            print(json.dumps(m, ensure_ascii=False))
        else:
            print(f"{m['created_at']}  {m['to']}  {m['purpose']}  {m['status']} ({m['gateway']},"
                  f" {m['attempts']} attempts)  call {m['call_id']}\n  {m['text']}")
    return 0


def cmd_demo_data(args) -> int:
    from ivr.data.population import population

    if not 1 <= args.customers <= 1_000_000:
        raise IvrError("--customers is 1..1000000", code="usage")
    records = population(args.customers, seed=args.seed)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        print(f"{args.output}: {args.customers} customers", file=sys.stderr)
        return 0
    from ivr.store.history_import import import_records

    path = _store_path(args)
    report = import_records(records, path, name="demo-data")
    for problem in report.problems:
        print(problem)
    print(f"{path}: loaded {report.loaded}, unchanged {report.unchanged}, rejected {report.rejected}",
          file=sys.stderr)
    return 1 if report.rejected else 0


def cmd_supervise(args) -> int:
    from ivr import supervisor

    return getattr(supervisor, args.action)(_config(args))


def cmd_watchdog(args) -> int:
    from ivr import watchdog

    return watchdog.main(_config(args))


def cmd_serve(args) -> int:
    from ivr.server import serve

    root = logging.getLogger()
    root.setLevel(logging.DEBUG if args.debug else logging.INFO)
    for handler in root.handlers:  # the controller's log is read after the fact: say when
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    asyncio.run(serve(_config(args)))
    return 0


def cmd_call(args) -> int:
    import time

    from ivr.sim import parse_script
    from ivr.store import read_recent
    from ivr.telephony import sipp

    config = _config(args)
    script = parse_script(args.script)
    path = Path(args.db) if args.db else config.var_dir / "ivr.db"
    if args.calls != 1:
        return _call_batch(args, config, script, path)
    before = {c["call_id"] for c in _recent(read_recent, path, 50)}
    result = sipp.run(script, target=f"{config.telephony.bind}:{config.telephony.sip_port}",
                      service=config.telephony.extension, caller=args.caller,
                      key_gap_ms=int(args.gap * 1000), end_wait_ms=int(args.wait * 1000), dtmf=args.dtmf,
                      timeout=600, speech_cfg=config.speech)
    if not result.ok:
        print(result.stderr[-1500:], file=sys.stderr)
        raise IvrError(f"SIPp reported a failed call (exit {result.returncode}); is the hotline up? "
                       "(`ivr status`)", code="call-failed")
    for _ in range(50):  # the controller records the end of the call just after the BYE
        new = [c for c in _recent(read_recent, path, 50) if c["call_id"] not in before]
        if new and new[0]["outcome"]:
            break
        time.sleep(0.1)
    if not new:
        raise IvrError("the call was placed but the controller recorded nothing (the dialplan's "
                       "fallback took it?)", code="call-not-recorded")
    args.last = 1
    call = new[0]
    if args.json:
        print(json.dumps(call, ensure_ascii=False))
    else:
        _print_call(call)
    return 0


def _call_batch(args, config, script, path) -> int:
    from ivr.store import read_recent
    from ivr.telephony.asterisk import AsteriskHost
    from ivr.telephony.call_batch import describe, place_calls

    if not 1 <= args.calls <= 1000 or not 0 < args.rate <= 50:
        raise IvrError("--calls is 1 to 1000 and --rate more than 0, at most 50 a second", code="usage")
    host = AsteriskHost.locate(config, provision=False)
    report = place_calls(script, calls=args.calls, rate=args.rate,
                         target=f"{config.telephony.bind}:{config.telephony.sip_port}",
                         service=config.telephony.extension, caller=args.caller,
                         count_channels=host.channel_count, recent=lambda n: _recent(read_recent, path, n),
                         key_gap_ms=int(args.gap * 1000), end_wait_ms=int(args.wait * 1000), dtmf=args.dtmf,
                         timeout=600, speech_cfg=config.speech)
    print(json.dumps(report, ensure_ascii=False) if args.json else describe(report))
    if not report["ok"]:
        raise IvrError(f"{args.calls} calls did not all complete and get recorded, or channels were "
                       "left (see above)", code="call-batch-failed")
    return 0


def _recent(read_recent, path, last):
    try:
        return read_recent(path, last)
    except FileNotFoundError:
        return []


def cmd_calls(args) -> int:
    from ivr.store import read_recent

    if args.last < 0:
        raise IvrError("--last is a number of calls (0 or more)", code="usage")
    path = Path(args.db) if args.db else _config(args).var_dir / "ivr.db"
    try:
        calls = read_recent(path, args.last)
    except FileNotFoundError:
        raise IvrError(f"no call store at {path}", code="store-missing") from None
    for call in calls:
        if args.json:
            print(json.dumps(call, ensure_ascii=False))
            continue
        _print_call(call)
    return 0


def cmd_stats(args) -> int:
    from ivr.store.stats import compute
    from ivr.store.stats_text import report

    config = _config(args)
    path = Path(args.db) if args.db else config.var_dir / "ivr.db"
    try:
        result = compute(path, since=args.since, tz=config.calendar.timezone)
    except FileNotFoundError:
        raise IvrError(f"no call store at {path}", code="store-missing") from None
    print(json.dumps(result, ensure_ascii=False) if args.json else report(result))
    return 0


def cmd_web(args) -> int:
    from ivr.web.run import run_standalone

    config = _config(args)
    if args.port is not None and not 1 <= args.port <= 65535:
        raise IvrError("--port is a port number", code="usage")
    path = Path(args.db) if args.db else config.var_dir / "ivr.db"
    logging.getLogger().setLevel(logging.DEBUG if args.debug else logging.INFO)
    asyncio.run(run_standalone(config, path, port=args.port))
    return 0


def _print_call(call: dict) -> None:
    ended = f"{call['outcome'] or 'in progress'}"
    if call["transfer_queue"]:
        ended += f" -> {call['transfer_queue']}"
    print(f"{call['started_at']}  {call['call_id']}  {call['caller'] or '-'}  {ended}  "
          f"{call['duration'] or 0:.1f}s  flows {call['flow_version']}")
    for event in call["events"]:
        print("  " + _human_stored(event))


def _human_stored(data: dict) -> str:
    """A stored event (its wire dict) as `_human` prints it; unknown types print as key=value."""
    from ivr.events import Event

    try:
        return _human(Event.from_dict(data))
    except Exception:
        rest = " ".join(f"{k}={v}" for k, v in data.items() if k not in ("t", "type"))
        return f"{data.get('t', 0):7.1f}s  ----  {data.get('type')} {rest}"


def cmd_bench(args) -> int:
    import importlib.util

    from ivr.config import REPO_ROOT

    path = Path(REPO_ROOT) / "tests" / "bench" / f"bench_{args.name}.py"
    if not path.exists():
        known = sorted(p.stem[6:] for p in path.parent.glob("bench_*.py"))
        raise IvrError(f"no benchmark {args.name!r} (known: {', '.join(known)})", code="bench-unknown")
    spec = importlib.util.spec_from_file_location(f"bench_{args.name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses (and pickling) look the module up by name
    spec.loader.exec_module(module)
    result = module.main(args.args)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0
