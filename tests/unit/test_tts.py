"""Prompt rendering: espeak-ng -> 8 kHz .wav + 16 kHz .sln16 files Asterisk can play."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import threading
import time
import uuid
import wave
from pathlib import Path

import numpy as np
import pytest

from ivr.errors import IvrError, TtsError
from ivr.speech import EspeakSynthesizer, PromptCache, Synthesizer, duration
from ivr.speech.audio import Pcm, parse_wav, resample, write_wav
from ivr.speech.tts import MAX_CHARS, clean_text

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                                reason="espeak-ng/sox not installed (./setup.sh installs them)")

EN = "Welcome to the customer hotline. How can I help you today?"
ZH = "您好，欢迎致电客户服务热线。请问有什么可以帮您？"


@pytest.fixture
def cache(tmp_path):
    return PromptCache(tmp_path / "prompts", EspeakSynthesizer(), flows_dir=tmp_path / "flows")


def wav_info(base: Path):
    with wave.open(str(base) + ".wav", "rb") as w:
        return w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes(), w.readframes(w.getnframes())


def rms(pcm: bytes) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(float)
    return float(np.sqrt(np.mean(x ** 2))) if len(x) else 0.0


# ---- formats -------------------------------------------------------------------------------

@pytest.mark.parametrize("text,lang", [(EN, "en"), (ZH, "zh")])
async def test_render_writes_asterisk_formats(cache, text, lang):
    base = await cache.render(text, lang)
    assert base.suffix == "" and base.parent == cache.dir / lang and len(base.name) == 24
    rate, channels, width, frames, pcm = wav_info(base)
    assert (rate, channels, width) == (8000, 1, 2)
    assert 1.0 < frames / 8000 < 15
    assert rms(pcm) > 300, "the prompt is (nearly) silent"
    sln = Path(str(base) + ".sln16").read_bytes()
    assert len(sln) % 2 == 0
    # 16 kHz raw vs 8 kHz wav of the same audio: twice the samples, give or take rounding
    assert abs(len(sln) // 2 - 2 * frames) <= 2
    assert rms(sln) > 300
    assert duration(base) == pytest.approx(frames / 8000)
    assert cache.duration(str(base) + ".wav") == pytest.approx(frames / 8000)


async def test_files_readable_by_other_users_despite_umask(cache):
    old = os.umask(0o077)
    try:
        base = await cache.render("Your card is now frozen.", "en")
    finally:
        os.umask(old)
    for ext in (".wav", ".sln16"):
        assert stat.S_IMODE(os.stat(str(base) + ext).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(base.parent).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(cache.dir).st_mode) == 0o755
    assert not [p for p in base.parent.iterdir() if p.name.endswith(".tmp")], "temp files left behind"


async def test_sln16_and_wav_hold_the_same_audio(cache):
    base = await cache.render(EN, "en")
    *_, pcm8 = wav_info(base)
    x8 = np.frombuffer(pcm8, dtype="<i2").astype(float)
    x16 = np.frombuffer(Path(str(base) + ".sln16").read_bytes(), dtype="<i2")
    down = resample(x16, 16000, 8000).astype(float)
    n = min(len(x8), len(down))
    corr = np.corrcoef(x8[:n], down[:n])[0, 1]
    assert corr > 0.95  # little-endian, same timing: a byte-swapped or shifted file would fail


def test_resampler_keeps_speech_band_and_removes_aliases():
    t = np.arange(22050) / 22050
    for freq, lo, hi in [(1000, -0.5, 0.5), (3000, -1.0, 0.5), (5000, -300, -60), (9000, -300, -60)]:
        x = (10000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
        y = resample(x, 22050, 8000)
        assert len(y) == 8000
        gain = 20 * np.log10(max(rms(y[800:-800].tobytes()), 1e-9) / rms(x[2205:-2205].tobytes()))
        assert lo <= gain <= hi, (freq, gain)
    # timing: a resampled tone lines up with the ideal tone at the new rate
    x = (10000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)
    ideal = (10000 * np.sin(2 * np.pi * 300 * np.arange(8000) / 8000))
    assert np.abs(resample(x, 22050, 8000)[100:-100] - ideal[100:-100]).max() < 20


def test_parse_wav_tolerates_streaming_header():
    data = (np.arange(100, dtype="<i2") * 7).tobytes()
    import struct
    hdr = b"RIFF" + struct.pack("<I", 0x7FFFFFFF) + b"WAVE" + b"fmt " + struct.pack(
        "<IHHIIHH", 16, 1, 1, 22050, 44100, 2, 16) + b"data" + struct.pack("<I", 0x7FFFFFFF)
    pcm = parse_wav(hdr + data)
    assert pcm.rate == 22050 and pcm.data == data
    with pytest.raises(ValueError):
        parse_wav(b"Usage: espeak-ng [options] ...")


# ---- duration tracks the text --------------------------------------------------------------

async def test_duration_roughly_proportional_to_text(cache):
    short_en = await cache.render("Please enter your card number.", "en")
    long_en = await cache.render(" ".join(["Please enter your card number."] * 4), "en")
    ratio = duration(long_en) / duration(short_en)
    assert 2.5 < ratio < 5.5, ratio
    short_zh = await cache.render("请输入卡号。", "zh")
    long_zh = await cache.render("请输入卡号。" * 4, "zh")
    ratio = duration(long_zh) / duration(short_zh)
    assert 2.5 < ratio < 5.5, ratio


async def test_mandarin_reads_characters_in_mandarin(cache):
    # Debian's `cmn` voice reads 您好 as English gibberish; the chosen voice must not switch to English
    synth = cache.synthesizer
    ph = synth.phonemes("您好，欢迎致电。", "zh")
    assert "(en)" not in ph and "35" in ph  # Mandarin tone numbers, no language switch
    # about 5 syllables a second: 12 characters is a few seconds, not the 7+ s of spelled-out code points
    base = await cache.render("您好，欢迎致电客户服务热线。", "zh")
    assert 1.5 < duration(base) < 5.0


# ---- caching -------------------------------------------------------------------------------

async def test_cached_render_is_reused_and_keyed_by_voice_lang_text(cache, tmp_path):
    a = await cache.render(EN, "en")
    mtime = os.stat(str(a) + ".wav").st_mtime_ns
    assert await cache.render(EN, "en") == a and cache.rendered == 1
    assert os.stat(str(a) + ".wav").st_mtime_ns == mtime
    assert await cache.render(EN + " ", "en") == a  # same spoken text
    assert await cache.render(EN + "!", "en") != a
    assert await cache.render(EN, "zh") != a
    slow = PromptCache(cache.dir, EspeakSynthesizer(words_per_minute=120))
    assert slow.path_for(EN, "en") != a  # another voice setting: another file
    # a fresh cache object over the same folder finds the files on disk
    again = PromptCache(cache.dir, EspeakSynthesizer())
    assert await again.render(EN, "en") == a and again.rendered == 0


class CountingSynth:
    def __init__(self, inner, delay=0.2):
        self.inner, self.delay, self.calls, self.threads = inner, delay, 0, set()
        self.lock = threading.Lock()

    def voice_id(self, lang):
        return self.inner.voice_id(lang)

    def synthesize(self, text, lang):
        with self.lock:
            self.calls += 1
        self.threads.add(threading.get_ident())
        time.sleep(self.delay)  # blocks: must run off the event loop
        return self.inner.synthesize(text, lang)


async def test_concurrent_renders_of_one_text_render_once(tmp_path):
    synth = CountingSynth(EspeakSynthesizer())
    assert isinstance(synth, Synthesizer)
    cache = PromptCache(tmp_path, synth)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    t = asyncio.create_task(ticker())
    paths = await asyncio.gather(*[cache.render("Your claim has been approved.", "en") for _ in range(12)])
    t.cancel()
    assert len(set(paths)) == 1 and synth.calls == 1 and cache.rendered == 1
    assert threading.get_ident() not in synth.threads  # rendered in a worker thread
    assert ticks >= 5, "the event loop was blocked while rendering"
    # different texts do render, in parallel
    synth.calls = 0
    await asyncio.gather(cache.render("one", "en"), cache.render("two", "en"), cache.render("one", "en"))
    assert synth.calls == 2


async def test_cancelled_waiter_does_not_cancel_shared_render(tmp_path):
    synth = CountingSynth(EspeakSynthesizer(), delay=0.3)
    cache = PromptCache(tmp_path, synth)
    first = asyncio.create_task(cache.render("Please hold.", "en"))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(cache.render("Please hold.", "en"))
    await asyncio.sleep(0.05)
    first.cancel()  # the first caller hung up
    base = await second
    assert synth.calls == 1 and Path(str(base) + ".wav").is_file()


async def test_failed_render_leaves_nothing_and_can_be_retried(tmp_path):
    class Flaky:
        calls = 0

        def voice_id(self, lang):
            return "flaky"

        def synthesize(self, text, lang):
            self.calls += 1
            if self.calls == 1:
                raise TtsError("boom")
            return Pcm(b"\x10\x00" * 22050, 22050)

    cache = PromptCache(tmp_path, Flaky())
    with pytest.raises(TtsError):
        await cache.render("hello", "en")
    assert not list(tmp_path.rglob("*.wav")) and not list(tmp_path.rglob("*.tmp"))
    base = await cache.render("hello", "en")
    assert duration(base) == pytest.approx(1.0, abs=0.01)


async def test_prerender_warms_static_prompts(cache):
    prompts = [{"en": "Main menu.", "zh": "主菜单。"}, {"en": "Hello {profile.name}.", "zh": "您好，{profile.name}。"},
               ("Goodbye.", "en")]
    paths = await cache.prerender(prompts)
    assert len(paths) == 3 and cache.rendered == 3  # the templates with placeholders are left for call time
    assert all(Path(str(p) + ".wav").is_file() for p in paths)
    assert await cache.render("Main menu.", "en") == paths[0] and cache.rendered == 3


class PeakSynth(CountingSynth):
    """Counts how many renders run at the same moment."""

    def __init__(self, inner, delay=0.05):
        super().__init__(inner, delay)
        self.running = self.peak = 0

    def synthesize(self, text, lang):
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            return super().synthesize(text, lang)
        finally:
            with self.lock:
                self.running -= 1


async def test_a_calls_render_does_not_queue_behind_the_prerender(tmp_path):
    """A cold cache: 40 prompts pre-render with one worker; a call's prompt asked for meanwhile
    is ready long before them (it once waited 27 s behind the whole prerender)."""
    synth = PeakSynth(EspeakSynthesizer(), delay=0.05)
    cache = PromptCache(tmp_path, synth)
    warm = asyncio.ensure_future(cache.prerender([(f"Static prompt number {i}.", "en") for i in range(40)],
                                                 workers=1))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await cache.render("Your claim is under review.", "en")
    took = time.monotonic() - started
    assert not warm.done(), f"the call's render waited {took:.2f} s, until the whole prerender was done"
    assert took < 1.0, f"the call's render waited {took:.2f} s behind the prerender"
    await warm
    assert synth.peak <= 2  # one prerender at a time, plus the call's


# ---- hostile text --------------------------------------------------------------------------

async def test_hostile_text_is_spoken_never_executed(cache, tmp_path):
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
    evil = tmp_path / "evil.wav"
    texts = [
        f'$(touch {marker})', f'`touch {marker}`', f'; touch {marker}', f'" && touch {marker} && "',
        f"'; touch {marker}; '", f"x\ntouch {marker}\n", "--help", "-v xx --stdout", f"-w {evil}",
        'He said "hello" and left', "Emoji 😀🎉 are fine", "<speak>ssml?</speak>", "null\x00byte",
    ]
    for text in texts:
        base = await cache.render(text, "en")
        assert not marker.exists(), f"caller text reached a shell: {text!r}"
        assert not evil.exists(), f"caller text was parsed as an option: {text!r}"
        rate, channels, width, frames, pcm = wav_info(base)
        assert (rate, channels, width) == (8000, 1, 2)
        assert frames > 0.3 * 8000, f"{text!r} produced almost no audio"


async def test_control_characters_are_spaces(cache):
    assert clean_text(" Hello\nworld\x00 again\r\n") == "Hello world again"
    assert cache.path_for("Hello\nworld", "en") == cache.path_for("Hello world", "en")
    assert cache.path_for("Hello world", "en") != cache.path_for("Hello, world", "en")


async def test_overlong_text_is_rejected_cleanly(cache):
    with pytest.raises(TtsError) as e:
        await cache.render("word " * 2000, "en")
    assert e.value.code == "tts-text-too-long"
    assert not cache.dir.exists() or not list(cache.dir.rglob("*.wav"))
    assert len(clean_text("a" * MAX_CHARS)) == MAX_CHARS  # the cap itself is allowed


async def test_unknown_language_is_a_clear_error(cache):
    with pytest.raises(TtsError) as e:
        await cache.render("hello", "xx")
    assert e.value.code == "tts-no-voice"
    with pytest.raises(TtsError):
        await cache.render("hello", "../etc")


def test_empty_text_is_a_short_silence():
    pcm = EspeakSynthesizer().synthesize(" \n\t ", "en")
    assert 0 < pcm.seconds < 0.5 and not any(pcm.data)


# ---- tools missing -------------------------------------------------------------------------

async def test_missing_espeak_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    cache = PromptCache(tmp_path / "p", EspeakSynthesizer())
    with pytest.raises(IvrError) as e:
        await cache.render("hello", "en")
    assert e.value.code == "tts-unavailable"
    assert "apt-get install espeak-ng" in str(e.value)
    with pytest.raises(IvrError) as e:
        EspeakSynthesizer(binary="espeak-ng-not-here").synthesize("hello", "en")
    assert e.value.code == "tts-unavailable"


# ---- recorded prompts ----------------------------------------------------------------------

def _write_stereo_44k(path: Path, seconds=1.5):
    t = np.arange(int(44100 * seconds)) / 44100
    left = (8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2")
    stereo = np.stack([left, left], axis=1).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(stereo)


async def test_recorded_audio_overrides_tts(cache, tmp_path):
    rec = tmp_path / "flows" / "recordings" / "welcome_en.wav"
    _write_stereo_44k(rec)
    base = await cache.render("text that is not spoken", "en", audio="recordings/welcome_en.wav")
    rate, channels, width, frames, pcm = wav_info(base)
    assert (rate, channels, width) == (8000, 1, 2)
    assert frames / 8000 == pytest.approx(1.5, abs=0.02)
    assert rms(pcm) > 3000  # the 440 Hz tone, not speech and not silence
    sln = Path(str(base) + ".sln16").read_bytes()
    assert abs(len(sln) // 2 - 2 * frames) <= 2
    x16 = np.frombuffer(sln, dtype="<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(x16))
    assert abs(np.argmax(spectrum) * 16000 / len(x16) - 440) < 5  # little-endian, 16 kHz: the tone is at 440 Hz
    for ext in (".wav", ".sln16"):
        assert stat.S_IMODE(os.stat(str(base) + ext).st_mode) == 0o644
    # cached by content: the same file is not converted twice; an edited recording is
    assert await cache.render("x", "en", audio=rec) == base and cache.rendered == 1
    _write_stereo_44k(rec, seconds=0.5)
    changed = await cache.render("x", "en", audio="recordings/welcome_en.wav")
    assert changed != base and duration(changed) == pytest.approx(0.5, abs=0.02)
    # prerender with audio: {lang: file}
    paths = await cache.prerender([{"en": "ignored", "zh": "中文", "audio": {"en": "recordings/welcome_en.wav"}}])
    assert paths[0] == changed


async def test_recorded_audio_errors(cache, tmp_path):
    with pytest.raises(TtsError) as e:
        await cache.render("x", "en", audio="recordings/missing.wav")
    assert e.value.code == "tts-audio-missing"
    bad = tmp_path / "flows" / "bad.wav"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(b"this is not audio")
    with pytest.raises(TtsError) as e:
        await cache.render("x", "en", audio="bad.wav")
    assert e.value.code == "tts-audio-bad"
    assert not list(cache.dir.rglob("*.tmp")) and not list(cache.dir.rglob("*.wav"))
    # a file name sox would treat specially is still just a file
    odd = tmp_path / "flows" / "-n"
    _write_stereo_44k(odd, seconds=0.3)
    base = await cache.render("x", "en", audio="-n")
    assert duration(base) == pytest.approx(0.3, abs=0.02)


async def test_missing_sox_names_the_fix(cache, tmp_path):
    _write_stereo_44k(tmp_path / "flows" / "a.wav", seconds=0.2)
    cache.sox = "sox-not-installed"
    with pytest.raises(IvrError) as e:
        await cache.render("x", "en", audio="a.wav")
    assert e.value.code == "tts-unavailable" and "apt-get install sox" in str(e.value)


def test_write_wav_roundtrip(tmp_path):
    x = (np.arange(800) % 200 - 100).astype(np.int16)
    write_wav(tmp_path / "a.wav", x, 8000)
    with wave.open(str(tmp_path / "a.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert np.array_equal(np.frombuffer(w.readframes(800), dtype="<i2"), x)


def test_split_sentences_keeps_decimals_and_joins_short_pieces():
    from ivr.speech.prompts import split_sentences

    assert split_sentences("I've registered your claim. Your claim number is 20267136. Again, that's it.") == [
        "I've registered your claim.", "Your claim number is 20267136.", "Again, that's it."]
    assert split_sentences("OK. Your balance is 80.25 yuan. Fine!") == ["OK. Your balance is 80.25 yuan. Fine!"]
    assert split_sentences("已为您登记报案，报案号是20260948。再重复一遍，20260948。") == [
        "已为您登记报案，报案号是20260948。", "再重复一遍，20260948。"]
    assert split_sentences("Please hold") == ["Please hold"]


class OneAtATimeSynth(CountingSynth):
    """Renders one text at a time, as the shared piper voice does."""

    def synthesize(self, text, lang):
        with self.lock:
            self.calls += 1
            time.sleep(self.delay)
            return self.inner.synthesize(text, lang)


async def test_a_long_uncached_prompt_plays_from_its_first_sentence(tmp_path):
    synth = OneAtATimeSynth(EspeakSynthesizer(), delay=0.3)
    cache = PromptCache(tmp_path, synth)
    text = "Your card ending 4321 has a balance of 80.25 yuan. The minimum payment is 10 yuan. It is due on the 10th."
    parts = cache.render_parts(text, "en")
    first = await anext(parts)
    assert synth.calls < 3, "the first sentence waited for the whole prompt"
    rest = [p async for p in parts]
    assert len(rest) == 2 and all(Path(str(p) + ".wav").is_file() for p in [first, *rest])
    # a prompt rendered whole before (every static prompt is pre-rendered) plays as one file
    await cache.render("Welcome to Harbor Financial Group. How can I help?", "en")
    whole = [p async for p in cache.render_parts("Welcome to Harbor Financial Group. How can I help?", "en")]
    assert len(whole) == 1
