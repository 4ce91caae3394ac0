"""`ivr models list` and `ivr models install` as an admin runs them, on the real models dir that
./setup.sh fills. No Asterisk: these only look at files (and install must not download again)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
IVR = str(REPO / ".venv" / "bin" / "ivr")


def ivr(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([IVR, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_models_list_reports_the_required_models_installed():
    proc = ivr("models", "list", "--json")
    report = json.loads(proc.stdout)
    models = {m["name"]: m for m in report["models"]}
    required = [m for m in report["models"] if m["required"]]
    assert {"whisper-base", "piper-joe-medium", "silero-vad-v6"} <= {m["name"] for m in required}
    assert all(m["installed"] for m in required), [m for m in required if not m["installed"]]
    assert proc.returncode == 0, proc.stderr
    assert Path(models["whisper-base"]["path"], "model.bin").is_file()


def test_models_install_again_is_a_quick_no_op():
    ivr("models", "install")  # in case the suite runs before ./setup.sh did
    started = time.monotonic()
    proc = ivr("models", "install")
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert elapsed < 10, f"a no-op install took {elapsed:.1f} s"
    assert "downloading" not in proc.stderr and "assembling" not in proc.stderr, proc.stderr
    assert "whisper-base: ok" in proc.stderr and "piper-joe-medium: ok" in proc.stderr
    assert "whisper-base" in proc.stdout  # the table


@pytest.mark.parametrize("command,key,code", [
    (("transcribe", "tests/fixtures/audio/zh_no.wav", "--lang", "zh"), "asr_model", "asr-model-missing"),
    (("say", "hello", "-o", "/tmp/ivr-missing-voice.wav"), "piper_voice", "tts-model-missing"),
])
def test_a_missing_model_is_a_clear_error_naming_the_fix(tmp_path, command, key, code):
    """A config pointing at a model that is not there: one line with the code and the command
    that fixes it, no traceback (and `ivr serve` stops at start with the same line)."""
    import yaml

    data = yaml.safe_load((REPO / "config.yaml").read_text())
    data["speech"]["models_dir"] = str(tmp_path / "no-models")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True))
    proc = ivr("--config", str(cfg), *command)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert code in proc.stderr and "ivr models install" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
