"""End-to-end fixtures: the real hotline (Asterisk in its chroot + the controller) and SIPp callers.

`hotline_agi` / `hotline_ari` bring the hotline up with the FastAGI / ARI controller and yield
a `Hotline` handle: `.config`, `.host` (AsteriskHost), `.rx(cli)`, `.call(script, **kw)` (a real
SIPp call; returns the new call records from the store once they are complete), `.call_async`,
and helpers to look at Asterisk (channels, queue callers) and to kill the controller.

Both hotlines share Asterisk, its ports and the chroot, so only one runs at a time: asking for
one brings the other down, and the tests are ordered so that every AGI test runs before the ARI
ones (one switch per session). The session ends with `ivr down`.

Each hotline runs on a copy of config.yaml written to a temporary folder (absolute paths), with
two deliberate differences:
  * the ARI copy has `telephony.controller: ari` and its own var dir (its own store, secrets and
    pid file), so AGI and ARI records never mix; the AGI copy keeps the repository's var/ (so
    `ivr status`, `ivr call` and `ivr calls` keep working on the instance under test);
  * business hours are all day, every day, with no holidays: the agent scene offers a call back
    outside opening hours, and "0 reaches the agent queue" must not depend on when the suite runs.

No root or no SIPp: the e2e tests are skipped with the reason, except in CI (CI=true), where
that is a failure.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SCRIPTS = Path(__file__).resolve().parent / "scripts"
PCAP_DIR = Path("/usr/share/sip-tester")
FLAG_KEYS = ("hotline.closed", "hotline.maintenance")
ALWAYS_OPEN = {d: "00:00-23:59" for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


# -- requirements --------------------------------------------------------------------------
def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "the e2e tests need root (Asterisk runs in a chroot; /proc is mounted into it)"
    if shutil.which("sipp") is None:
        return "SIPp is not installed (./setup.sh installs the sip-tester package)"
    if not (PCAP_DIR / "dtmf_2833_1.pcap").exists():
        return f"SIPp's RFC 4733 DTMF pcaps are missing from {PCAP_DIR}"
    return None


def _require_e2e() -> None:
    reason = _missing()
    if reason is None:
        return
    if _in_ci():
        pytest.fail(f"e2e requirements missing in CI (CI=true, so this is not skipped): {reason}",
                    pytrace=False)
    pytest.skip(f"e2e skipped: {reason}")


def pytest_collection_modifyitems(config, items):
    """AGI hotline tests first, then ARI ones: one switch of the shared Asterisk per session."""
    def rank(item) -> int:
        names = getattr(item, "fixturenames", ())
        return 2 if "hotline_ari" in names else 1 if "hotline_agi" in names else 0

    items.sort(key=rank)  # stable: the order within each group is kept


# -- helpers -------------------------------------------------------------------------------
def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.2,
             what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; raise AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what} (last: {last!r})")
        time.sleep(interval)


class Calls(list):
    """The call records a SIPp run produced (newest first), with the SIPp result attached."""

    sipp: Any = None

    def sipp_tail(self, chars: int = 1500) -> str:
        if self.sipp is None:
            return ""
        return f"sipp exit {self.sipp.returncode} (in {self.sipp.workdir}):\n" \
               f"{(self.sipp.stderr or '')[-chars:]}\n{(self.sipp.stdout or '')[-chars:]}"


def _complete(call: dict) -> bool:
    """finish() has written the call's final state (scenes come only from finish)."""
    return bool(call.get("outcome")) and bool(call.get("scenes"))


class Hotline:
    """One hotline configuration (agi or ari) on the shared Asterisk."""

    wait_for = staticmethod(wait_for)

    def __init__(self, mode: str, config_path: Path) -> None:
        from ivr.config import load_config

        self.mode = mode
        self.config_path = config_path
        self.config = load_config(str(config_path))
        self._host = None
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="sipp")

    # -- lifecycle --------------------------------------------------------------------------
    def ivr(self, *args: str, timeout: float = 300, config: Path | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        cfg = str(config or self.config_path)
        proc = subprocess.run([sys.executable, "-m", "ivr", "--config", cfg, *args], cwd=REPO,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"`ivr {' '.join(args)}` (config {cfg}) exited {proc.returncode}:\n"
                                 f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        return proc

    def up(self) -> None:
        self.ivr("up", timeout=400)
        wait_for(self.ready, 30, what=f"the {self.mode} hotline to be ready")
        tel = self.config.telephony
        sip = f"{tel.bind}:{tel.sip_port}"
        if sip not in self.rx("pjsip show transports"):  # e.g. another Asterisk holds the port
            holders = subprocess.run(["ss", "-lunp"], capture_output=True, text=True).stdout
            raise AssertionError(f"Asterisk is up but its SIP transport {sip} is not (port taken? "
                                 f"see {self.config.var_dir / 'log' / 'asterisk.log'}):\n{holders}")
        for key in FLAG_KEYS:  # a flag left set by someone would change every call's path
            self.rx(f"database del ivr {key}")

    def down(self) -> None:
        self.ivr("down", timeout=120)

    @property
    def host(self):
        if self._host is None:
            from ivr.telephony.asterisk import AsteriskHost

            self._host = AsteriskHost.locate(self.config, provision=False)
        return self._host

    @property
    def store_path(self) -> Path:
        return self.config.var_dir / "ivr.db"

    @property
    def pid_file(self) -> Path:
        return self.config.var_dir / "run" / "controller.pid"

    @property
    def ready_file(self) -> Path:
        return self.config.var_dir / "run" / "controller.ready"

    def controller_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().split()[0])
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError, IndexError):
            return None

    def ready(self) -> bool:
        return self.controller_pid() is not None and self.ready_file.exists() and self.host.running()

    def kill_controller(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        """Signal the controller and wait until it is gone; returns its pid."""
        pid = self.controller_pid()
        assert pid is not None, "the controller is not running"
        os.kill(pid, sig)

        def gone() -> bool:
            try:
                os.kill(pid, 0)
            except OSError:
                return True
            # a zombie (our child? no: `ivr up` started it in its own session) counts as gone
            try:
                return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
            except OSError:
                return True

        wait_for(gone, timeout, 0.05, what=f"controller pid {pid} to exit after signal {sig}")
        return pid

    # -- Asterisk ---------------------------------------------------------------------------
    def rx(self, cli: str, timeout: float = 10) -> str:
        return self.host.rx(cli, timeout=timeout)

    def channels(self) -> list[dict[str, str]]:
        """`core show channels concise`, one dict per channel."""
        keys = ("channel", "context", "exten", "priority", "state", "app", "data", "callerid")
        rows = []
        for line in self.rx("core show channels concise").splitlines():
            parts = line.split("!")
            if len(parts) >= len(keys):
                rows.append(dict(zip(keys, parts)))
        return rows

    def channel_count(self) -> int:
        return self.host.channel_count()

    def wait_no_channels(self, timeout: float = 20) -> None:
        wait_for(lambda: self.channel_count() == 0, timeout, 0.3,
                 what="Asterisk to show 0 active channels")

    def channel_of(self, caller: str, timeout: float = 10, app: str | None = None) -> dict[str, str]:
        """The channel of the call from `caller` (optionally: once it runs dialplan app `app`)."""
        def find():
            for ch in self.channels():
                if ch["callerid"] == caller and (app is None or ch["app"] == app):
                    return ch
            return None

        return wait_for(find, timeout, 0.1, what=f"a channel from {caller}" + (f" in {app}" if app else ""))

    def queue_callers(self, queue: str) -> list[str]:
        """Channel names waiting in `queue` (`queue show QUEUE`)."""
        out = self.rx(f"queue show {queue}")
        return re.findall(r"^\s*\d+\.\s+(\S+)\s+\(wait", out, re.M)

    def set_flag(self, key: str, value: str) -> None:
        out = self.rx(f"database put ivr {key} {value}")
        assert "success" in out.lower(), out

    def del_flag(self, key: str) -> None:
        self.rx(f"database del ivr {key}")

    # -- calls ------------------------------------------------------------------------------
    def script(self, script) -> Any:
        from ivr.sim import Script, parse_script

        if isinstance(script, Script):
            return script
        path = Path(script)
        if not path.is_absolute() and not path.exists():
            path = SCRIPTS / path
        return parse_script(str(path))

    def call_ids(self) -> set[str]:
        if not self.store_path.exists():
            return set()
        db = sqlite3.connect(f"file:{self.store_path}?mode=ro", uri=True, timeout=10)
        try:
            return {r[0] for r in db.execute("SELECT id FROM calls")}
        except sqlite3.OperationalError:  # no calls table yet
            return set()
        finally:
            db.close()

    def new_calls(self, before: set[str], caller: str | None = None, last: int = 200) -> list[dict]:
        from ivr.privacy import mask_phone
        from ivr.store import read_recent

        if not self.store_path.exists():
            return []
        calls = [c for c in read_recent(self.store_path, last) if c["call_id"] not in before]
        if caller:
            calls = [c for c in calls if c["caller"] == mask_phone(caller)]
        return calls

    def call(self, script, *, calls: int = 1, caller: str | None = None, expect: int | None = None,
             wait: float = 10, check: bool = True, sipp_timeout: float = 120, **sipp_args) -> Calls:
        """Place `calls` real calls with SIPp and return the new, complete call records (newest
        first; only this caller's, so calls someone else places meanwhile are ignored).

        Waits up to `wait` s after SIPp ends for `expect` (default `calls`) complete records; with
        `check`, a failed SIPp run is an AssertionError."""
        from ivr.telephony import sipp

        parsed = self.script(script)
        number = caller or parsed.caller or ""
        tel = self.config.telephony
        before = self.call_ids()
        result = sipp.run(parsed, target=f"{tel.bind}:{tel.sip_port}", service=tel.extension,
                          caller=number, calls=calls, timeout=sipp_timeout,
                          **{"speech_cfg": self.config.speech, **sipp_args})
        want = calls if expect is None else expect
        found: list[dict] = []
        deadline = time.monotonic() + wait
        while True:
            found = [c for c in self.new_calls(before, number or None, last=max(200, 4 * calls))
                     if _complete(c)]
            if len(found) >= want or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        out = Calls(found)
        out.sipp = result
        if check and not result.ok:
            raise AssertionError("SIPp reported a failed call\n" + out.sipp_tail())
        return out

    def call_async(self, script, **kw) -> concurrent.futures.Future:
        return self._pool.submit(self.call, script, **kw)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _write_config(path: Path, *, controller: str, var_dir: Path) -> Path:
    data = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8")) or {}
    data.setdefault("flows", {})["dir"] = str(REPO / "flows")
    paths = data.setdefault("paths", {})
    paths["var_dir"] = str(var_dir)
    paths["dialplans"] = str(REPO / "dialplans")
    data.setdefault("telephony", {})["controller"] = controller
    cal = data.setdefault("calendar", {})
    cal["business_hours"] = dict(ALWAYS_OPEN)
    cal["holidays_country"] = ""
    cal["extra_holidays"] = []
    # these calls follow the prompts' timing: no SMS notice at call start, unless a test turns
    # it on from the Asterisk CLI (`database put ivr visual.auto_offer 1`), as an admin would
    data["flags"] = {**(data.get("flags") or {}), "visual.auto_offer": "0"}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# written by tests/e2e/conftest.py: config.yaml with absolute paths\n"
                    + yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


class Switchboard:
    """Which hotline is up on the shared Asterisk; bringing one up brings the other down."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.handles: dict[str, Hotline] = {}
        self.active: Hotline | None = None
        self.fresh = False  # the repository's own hotline has been brought down once

    def handle(self, mode: str) -> Hotline:
        if mode not in self.handles:
            if mode == "agi":
                var_dir = REPO / "var"
            else:
                var_dir = self.tmp / f"var-{mode}"
                cache = REPO / "var" / "cache"
                if cache.is_dir() and not (var_dir / "cache").exists():
                    shutil.copytree(cache, var_dir / "cache")  # the router's embedding cache
            cfg = _write_config(self.tmp / f"config-{mode}.yaml", controller=mode, var_dir=var_dir)
            self.handles[mode] = Hotline(mode, cfg)
        return self.handles[mode]

    def activate(self, mode: str) -> Hotline:
        hotline = self.handle(mode)
        if self.active is hotline:
            if not hotline.ready():  # a test stopped the controller and did not restart it
                hotline.up()
            return hotline
        if self.active is not None:
            self.active.down()
            self.active = None
        if not self.fresh:
            # whatever runs now (`ivr up` from the repo config, a previous session) goes down
            hotline.ivr("down", config=REPO / "config.yaml", timeout=120)
            self.fresh = True
        hotline.down()
        hotline.up()
        self.active = hotline
        return hotline

    def close(self) -> None:
        for hotline in self.handles.values():
            hotline.close()
        if self.active is not None:
            self.active.down()
            self.active = None


@pytest.fixture(scope="session")
def _switchboard(tmp_path_factory):
    _require_e2e()
    board = Switchboard(tmp_path_factory.mktemp("e2e-hotline"))
    yield board
    board.close()


@pytest.fixture
def hotline_agi(_switchboard) -> Hotline:
    """The hotline with the FastAGI controller (brought up once; restarted if a test left it down)."""
    return _switchboard.activate("agi")


@pytest.fixture
def hotline_ari(_switchboard) -> Hotline:
    """The hotline with the ARI controller; brings the AGI hotline down first."""
    if not (REPO / "ivr" / "telephony" / "ari.py").exists():
        pytest.skip("the ARI controller (ivr/telephony/ari.py) is not written yet")
    return _switchboard.activate("ari")
