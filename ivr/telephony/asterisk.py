"""The Asterisk we run: a system Asterisk >= 20, or one provisioned in a cached chroot.

It renders dialplans/ into Asterisk's config folder, starts and stops the daemon, and runs
CLI commands (`asterisk -rx`). Paths Asterisk sees are translated from host paths.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ivr.config import REPO_ROOT, Config
from ivr.errors import IvrError

_LOGGER = logging.getLogger(__name__)
SECRET_NAMES = ("AMI_SECRET", "ARI_SECRET", "SOFTPHONE_SECRET", "AGENT_SECRET", "WEB_ADMIN_PASSWORD")
CONFIG_FILES = ("pjsip.conf", "extensions.conf", "queues.conf", "manager.conf", "http.conf",
                "ari.conf", "logger.conf", "rtp.conf", "modules.conf")
ASTERISK_UID = "asterisk"
MIN_VERSION = 20
SOUNDS_DIR = "/var/lib/ivr/sounds"  # as Asterisk sees it
RECORDINGS_DIR = "/var/spool/asterisk/recording"


class AsteriskError(IvrError):
    code = "asterisk-error"


def load_secrets(var_dir: Path) -> dict[str, str]:
    """Secrets generated once per install (0600), never fixed in the repository."""
    path = var_dir / "secrets.json"
    data: dict[str, str] = {}
    if path.exists():
        data = json.loads(path.read_text())
    missing = [n for n in SECRET_NAMES if not data.get(n)]
    if missing:
        for name in missing:
            data[name] = secrets.token_urlsafe(24)
        var_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.chmod(tmp, 0o600)
        tmp.replace(path)
    return data


def render(text: str, values: dict[str, str], profile: str) -> str:
    """Fill {{NAME}} placeholders and keep `;; profile:X begin/end` blocks of this profile only."""
    out, keep = [], True
    for line in text.splitlines():
        marker = re.match(r";; profile:(\w+) (begin|end)", line.strip())
        if marker:
            keep = marker.group(2) == "end" or marker.group(1) == profile
            continue
        if keep:
            out.append(line)
    result = "\n".join(out) + "\n"

    def fill(m: re.Match) -> str:
        if m.group(1) not in values:
            raise AsteriskError(f"dialplan placeholder {{{{{m.group(1)}}}}} has no value",
                                code="dialplan-placeholder")
        return str(values[m.group(1)])

    return re.sub(r"\{\{([A-Z_]+)\}\}", fill, result)


@dataclass
class AsteriskHost:
    root: Path  # "/" for a system Asterisk, else the chroot
    config: Config

    @property
    def chrooted(self) -> bool:
        return self.root != Path("/")

    def host_path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    def command(self, *argv: str) -> list[str]:
        return (["chroot", str(self.root)] if self.chrooted else []) + list(argv)

    # -- provisioning and config ----------------------------------------------------------
    @classmethod
    def locate(cls, config: Config, *, provision: bool = True) -> "AsteriskHost":
        tel = config.telephony
        if tel.asterisk_root:
            root = Path(tel.asterisk_root)
            if not (root / "usr/sbin/asterisk").exists():
                raise AsteriskError(f"telephony.asterisk_root {root} has no usr/sbin/asterisk",
                                    code="asterisk-missing")
            return cls(root, config)
        system = shutil.which("asterisk")
        if system and _version_ok(subprocess.run([system, "-V"], capture_output=True, text=True).stdout):
            return cls(Path("/"), config)
        root = Path(tel.chroot_cache)
        if not (root / ".ivr-provisioned").exists():
            if not provision:
                raise AsteriskError("Asterisk is not provisioned; run ./setup.sh (or `ivr up`)",
                                    code="asterisk-missing")
            script = REPO_ROOT / "scripts" / "provision-asterisk.sh"
            _LOGGER.warning("provisioning Asterisk in %s (first run: a few minutes)", root)
            proc = subprocess.run(["bash", str(script), str(root)], capture_output=True, text=True)
            if proc.returncode != 0:
                raise AsteriskError("provisioning Asterisk failed:\n" + proc.stderr[-2000:],
                                    code="asterisk-provision-failed")
        return cls(root, config)

    def values(self, secrets_: dict[str, str], fallback_prompt: str) -> dict[str, str]:
        tel = self.config.telephony
        return {
            "BIND": tel.bind, "SIP_PORT": tel.sip_port, "AGI_PORT": tel.agi_port,
            "AMI_PORT": tel.ami_port, "HTTP_PORT": tel.http_port, "EXTENSION": tel.extension,
            "CONTROLLER": tel.controller, "ARI_APP": tel.ari_app, "AGENT_QUEUE": "agents",
            "FALLBACK_PROMPT": fallback_prompt, "BENCH_AGI_PORT": tel.agi_port + 17, **secrets_,
        }

    def install_config(self, secrets_: dict[str, str], fallback_prompt: str) -> None:
        src = self.config.resolve(self.config.paths.dialplans)
        dest = self.host_path("/etc/asterisk")
        values = self.values(secrets_, fallback_prompt)
        for name in CONFIG_FILES:
            text = render((src / name).read_text(encoding="utf-8"), values, self.config.profile)
            target = dest / name
            tmp = target.with_suffix(".ivr-tmp")
            tmp.write_text(text, encoding="utf-8")
            os.chmod(tmp, 0o640)
            shutil.chown(tmp, group=self._gid())
            tmp.replace(target)
        for inside in (SOUNDS_DIR, RECORDINGS_DIR, "/var/run/asterisk", "/var/log/asterisk",
                       "/var/lib/asterisk", "/var/spool/asterisk"):
            path = self.host_path(inside)
            path.mkdir(parents=True, exist_ok=True)
        self._chown_tree(RECORDINGS_DIR, "/var/run/asterisk", "/var/log/asterisk",
                         "/var/lib/asterisk", "/var/spool/asterisk")

    def _ids(self) -> tuple[int, int]:
        for line in self.host_path("/etc/passwd").read_text().splitlines():
            parts = line.split(":")
            if parts[0] == ASTERISK_UID:
                return int(parts[2]), int(parts[3])
        raise AsteriskError("no asterisk user in the Asterisk root", code="asterisk-missing")

    def _gid(self) -> int:
        return self._ids()[1]

    def _chown_tree(self, *insides: str) -> None:
        uid, gid = self._ids()
        for inside in insides:
            for dirpath, _, files in os.walk(self.host_path(inside)):
                os.chown(dirpath, uid, gid)
                for f in files:
                    try:
                        os.chown(os.path.join(dirpath, f), uid, gid)
                    except FileNotFoundError:
                        pass

    # -- running ---------------------------------------------------------------------------
    def rx(self, cli: str, timeout: float = 10) -> str:
        """Run an Asterisk CLI command; raises AsteriskError when Asterisk isn't answering."""
        proc = subprocess.run(self.command("/usr/sbin/asterisk", "-rx", cli), capture_output=True,
                              text=True, timeout=timeout)
        if proc.returncode != 0 or "Unable to connect to remote asterisk" in proc.stdout + proc.stderr:
            raise AsteriskError(f"Asterisk is not running ({cli!r} failed)", code="asterisk-down")
        return proc.stdout

    def running(self) -> bool:
        try:
            self.rx("core show version", timeout=5)
            return True
        except (AsteriskError, subprocess.TimeoutExpired):
            return False

    def start(self, log_path: Path, timeout: float = 60) -> None:
        if self.running():
            self.rx("core reload")
            return
        if self.chrooted:
            proc_dir = self.host_path("/proc")
            proc_dir.mkdir(exist_ok=True)
            if not os.path.ismount(proc_dir):
                subprocess.run(["mount", "-t", "proc", "proc", str(proc_dir)], check=True)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            subprocess.Popen(self.command("/usr/sbin/asterisk", "-f", "-n", "-U", ASTERISK_UID,
                                          "-G", ASTERISK_UID), stdout=log, stderr=log,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.rx("core waitfullybooted", timeout=timeout)
                return
            except (AsteriskError, subprocess.TimeoutExpired):
                time.sleep(0.3)
        raise AsteriskError(f"Asterisk did not start within {timeout:.0f} s; see {log_path}",
                            code="asterisk-start-failed")

    def stop(self, timeout: float = 20) -> None:
        if not self.running():
            return
        try:
            self.rx("core stop now", timeout=timeout)
        except (AsteriskError, subprocess.TimeoutExpired):
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.running():
            time.sleep(0.2)

    def channel_count(self) -> int:
        out = self.rx("core show channels count")
        match = re.search(r"(\d+) active channel", out)
        return int(match.group(1)) if match else 0


def _version_ok(text: str) -> bool:
    match = re.search(r"Asterisk (\d+)", text)
    return bool(match) and int(match.group(1)) >= MIN_VERSION
