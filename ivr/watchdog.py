"""Keeps the controller running, and never leaves a caller in silence when it dies.

`ivr up` starts this watchdog; it starts `ivr serve` as its child. When the controller dies
(a crash, `kill -9`), the watchdog at once sends every channel still parked in our Stasis app
to the dialplan's fallback (apology, then the agents queue) — a FastAGI channel gets there by
itself when its socket closes — and then starts a new controller, with a growing pause if it
keeps dying. SIGTERM stops the controller cleanly and ends the watchdog.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

from ivr.config import Config

_LOGGER = logging.getLogger(__name__)
FALLBACK = "ivr-fallback,start,1"


def pid_files(config: Config) -> tuple[Path, Path]:
    run = config.var_dir / "run"
    return run / "watchdog.pid", run / "controller.pid"


def rescue_parked_calls(host, app: str) -> list[str]:
    """Redirect channels left in Stasis(app) by a dead controller to the fallback."""
    try:
        out = host.rx("core show channels concise")
    except Exception:
        return []
    moved = []
    for line in out.splitlines():
        fields = line.split("!")
        if len(fields) > 6 and fields[5] == "Stasis" and fields[6].split(",")[0] == app:
            try:
                host.rx(f"channel redirect {fields[0]} {FALLBACK}")
                moved.append(fields[0])
            except Exception:
                _LOGGER.exception("could not redirect %s to the fallback", fields[0])
    return moved


def run(config: Config, argv: list[str]) -> int:
    """Run the controller (`argv`) until SIGTERM; restart it when it dies."""
    from ivr.telephony.asterisk import AsteriskHost

    watchdog_pid, controller_pid = pid_files(config)
    stopping = False
    child: subprocess.Popen | None = None

    def stop(*_) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    backoff = 0.5
    while not stopping:
        started = time.monotonic()
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        controller_pid.write_text(f"{child.pid}\n")
        code = child.wait()
        if stopping:
            break
        _LOGGER.error("controller exited with %s; rescuing parked calls and restarting", code)
        try:
            host = AsteriskHost.locate(config, provision=False)
            moved = rescue_parked_calls(host, config.telephony.ari_app)
            if moved:
                _LOGGER.error("sent %d parked calls to the fallback: %s", len(moved), ", ".join(moved))
        except Exception:
            _LOGGER.exception("rescue failed")
        backoff = 0.5 if time.monotonic() - started > 60 else min(backoff * 2, 30)
        time.sleep(backoff)
    controller_pid.unlink(missing_ok=True)
    watchdog_pid.unlink(missing_ok=True)
    return 0


def main(config: Config) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s watchdog: %(message)s")
    argv = [sys.executable, "-m", "ivr"] + (["--config", config.source] if config.source else []) + ["serve"]
    return run(config, argv)
