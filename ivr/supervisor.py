"""`ivr up`, `ivr down`, `ivr status`: the whole hotline in the background.

up: provision Asterisk (first time), generate secrets, render dialplans/, start Asterisk, start
the controller (`ivr serve`), wait until a call to the hotline would be answered.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ivr.config import Config
from ivr.errors import IvrError
from ivr.server import prompts_ready_file, ready_file

FALLBACK_TEXT = {
    "en": "We're sorry, our automated service is not available right now. Please hold for an agent.",
    "zh": "抱歉，自助服务暂时无法使用，正在为您转接人工服务，请稍候。",
}


def _pid_file(config: Config) -> Path:
    return config.var_dir / "run" / "controller.pid"


def _alive(path: Path) -> int | None:
    try:
        pid = int(path.read_text().split()[0])
        os.kill(pid, 0)
        # a killed controller stays a zombie until init reaps it: that is not a running one
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return None
        return pid
    except (OSError, ValueError, IndexError):
        return None


def _controller_pid(config: Config) -> int | None:
    return _alive(_pid_file(config))


def _watchdog_pid(config: Config) -> int | None:
    from ivr.watchdog import pid_files

    return _alive(pid_files(config)[0])


def _stop(pid: int | None, timeout: float = 10) -> None:
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return
        except OSError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def _render_fallback(host, config: Config) -> str:
    """An apology in both languages, rendered at set-up so it plays even with no controller."""
    from ivr.speech.prompts import PromptCache
    from ivr.speech.tts import EspeakSynthesizer
    from ivr.telephony.asterisk import SOUNDS_DIR

    cache = PromptCache(host.host_path(SOUNDS_DIR) / "fallback", EspeakSynthesizer())
    text = f"{FALLBACK_TEXT['en']} {FALLBACK_TEXT['zh']}"
    try:
        path = asyncio.run(cache.render(FALLBACK_TEXT["en"], "en"))
    except Exception as exc:  # no espeak: Asterisk's own recording still apologises
        print(f"ivr: fallback prompt not rendered ({exc}); using Asterisk's sound", file=sys.stderr)
        return "an-error-has-occurred"
    del text
    return "/" + str(Path(path).relative_to(host.root))


def up(config: Config, *, timeout: float = 120) -> int:
    from ivr.telephony.asterisk import AsteriskHost, load_secrets

    host = AsteriskHost.locate(config)
    secrets = load_secrets(config.var_dir)
    host.install_config(secrets, _render_fallback(host, config))
    host.start(config.var_dir / "log" / "asterisk.log")
    log = config.var_dir / "log" / "controller.log"
    if _watchdog_pid(config) is None:
        from ivr.watchdog import pid_files

        _stop(_controller_pid(config))  # a controller left from before the watchdog
        ready_file(config).unlink(missing_ok=True)
        log.parent.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "ivr"]
        if config.source:
            argv += ["--config", config.source]
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv + ["watchdog"], stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                    start_new_session=True, cwd=config.root)
        pid_files(config)[0].parent.mkdir(parents=True, exist_ok=True)
        pid_files(config)[0].write_text(f"{proc.pid}\n")
    # Ready means the controller that wrote the ready file is alive: a file left by a killed
    # controller doesn't count while the watchdog restarts it.
    deadline = time.monotonic() + timeout
    while _alive(ready_file(config)) is None:
        if _watchdog_pid(config) is None:
            raise IvrError(f"the controller's watchdog exited; see {log}", code="controller-start-failed")
        if time.monotonic() > deadline:
            raise IvrError(f"the controller was not ready within {timeout:.0f} s; see {log}",
                           code="controller-start-failed")
        time.sleep(0.2)
    _wait_for_prompts(config, PROMPT_WAIT)
    tel = config.telephony
    print(f"hotline up: Asterisk ({'chroot ' + str(host.root) if host.chrooted else 'system'}), "
          f"{tel.controller.upper()} controller, extension {tel.extension}")
    print(f"  softphone: sip:{tel.extension}@{tel.bind}:{tel.sip_port} "
          f"(user softphone, password in {config.var_dir / 'secrets.json'})")
    print("  test call: .venv/bin/ivr call flows/tests/call_keys.yaml")
    if config.web.enabled:
        print(f"  admin page: http://{config.web.bind}:{config.web.port}/admin "
              f"(password: WEB_ADMIN_PASSWORD in {config.var_dir / 'secrets.json'})")
    return 0


PROMPT_WAIT = 600.0  # a fresh install renders ~200 prompts in about a minute; huge flow sets take longer


def _wait_for_prompts(config: Config, timeout: float) -> None:
    """Until the controller has rendered the static prompts (calls are answered meanwhile, but
    a prompt not rendered yet starts late). Past `timeout` it goes on rendering in the background."""
    done = prompts_ready_file(config)
    started = time.monotonic()
    deadline = started + timeout
    told = False
    while not done.exists():
        if _alive(ready_file(config)) is None:
            return  # the controller died or restarted: its watchdog's business, not this wait's
        if time.monotonic() > deadline:
            print(f"ivr: prompts are still rendering after {timeout:.0f} s; they go on in the "
                  "background (until then a prompt may start a moment late)", file=sys.stderr)
            return
        if not told and time.monotonic() > started + 1:
            print("rendering the hotline's prompts (the first time takes a minute or two)...", flush=True)
            told = True
        time.sleep(0.2)


def down(config: Config) -> int:
    from ivr.telephony.asterisk import AsteriskHost

    from ivr.watchdog import pid_files

    _stop(_watchdog_pid(config), timeout=20)  # it stops the controller cleanly first
    _stop(_controller_pid(config))
    pid_files(config)[0].unlink(missing_ok=True)
    _pid_file(config).unlink(missing_ok=True)
    ready_file(config).unlink(missing_ok=True)
    try:
        host = AsteriskHost.locate(config, provision=False)
    except IvrError:
        print("hotline down")
        return 0
    host.stop()
    if host.chrooted:
        proc_dir = host.host_path("/proc")
        if os.path.ismount(proc_dir):
            subprocess.run(["umount", "-l", str(proc_dir)], check=False)
    print("hotline down")
    return 0


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def status(config: Config) -> int:
    from ivr.telephony.asterisk import AsteriskHost

    tel = config.telephony
    try:
        host = AsteriskHost.locate(config, provision=False)
        asterisk = host.running()
    except IvrError:
        host, asterisk = None, False
    pid = _controller_pid(config)
    ready = ready_file(config).read_text().split() if _alive(ready_file(config)) else []
    lines = [f"asterisk:   {'running' if asterisk else 'stopped'}"
             + (f" ({'chroot ' + str(host.root) if host.chrooted else 'system'})" if host else "")]
    if asterisk:
        lines.append(f"channels:   {host.channel_count()}")
    watchdog = _watchdog_pid(config)
    lines.append(f"controller: {'running pid ' + str(pid) if pid else 'stopped'}"
                 + (f", {ready[1]} on flows {ready[2]}" if len(ready) >= 3 else "")
                 + (f" (watchdog pid {watchdog})" if watchdog else " (no watchdog)"))
    if ready:
        done = prompts_ready_file(config)
        lines.append(f"prompts:    {' '.join(done.read_text().split()[:2]) if done.exists() else 'rendering'}")
    if tel.controller == "agi":
        lines.append(f"fastagi:    {'listening' if _port_open(tel.bind, tel.agi_port) else 'closed'} "
                     f"{tel.bind}:{tel.agi_port}")
    print("\n".join(lines))
    return 0 if asterisk and pid and ready else 3
