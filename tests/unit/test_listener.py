"""Endpointing and the per-call listener, on real Silero VAD and real synthesised speech."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import numpy as np
import pytest

from ivr.speech.audio import parse_wav, resample
from ivr.speech.endpoint import Barge, Dropped, Endpointer, Onset, Utterance
from ivr.speech.listener import SpeechListener
from ivr.speech.vad import SileroVad

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


@pytest.fixture(scope="module")
def vad():
    model = SileroVad()
    model.warm()
    return model


def speech(text: str) -> np.ndarray:
    """`text` spoken by espeak-ng, as 16 kHz float samples."""
    wav = subprocess.run(["espeak-ng", "-v", "en-us", "--stdout", text], capture_output=True, check=True).stdout
    pcm = parse_wav(wav)
    return resample(pcm.samples, pcm.rate, 16000).astype(np.float32) / 32768.0


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * 16000), np.float32)


def run_endpointer(vad, audio: np.ndarray, **kw) -> list:
    ep, stream, events = Endpointer(**kw), vad.stream(), []
    for i in range(0, len(audio), 320):  # 20 ms frames, as AudioSocket sends them
        for prob, chunk in stream.push(audio[i:i + 320]):
            events += ep.feed(prob, chunk)
    return events


def test_an_utterance_is_cut_after_the_end_silence_with_its_start_kept(vad):
    words = speech("I lost my credit card yesterday")
    events = run_endpointer(vad, np.concatenate([silence(1.0), words, silence(1.0)]))
    kinds = [type(e) for e in events]
    assert kinds == [Onset, Barge, Utterance], kinds
    utt = events[-1]
    assert 0.8 <= events[0].at <= 1.15  # onset where the words begin
    assert utt.detected - utt.end == pytest.approx(0.3, abs=0.07)  # ended after ~300 ms of silence
    assert utt.seconds >= len(words) / 16000 * 0.8  # the whole utterance, preroll included
    assert not utt.cut


def test_two_utterances_separated_by_a_pause_are_two(vad):
    audio = np.concatenate([silence(0.5), speech("yes"), silence(1.0), speech("claim status"), silence(0.8)])
    utts = [e for e in run_endpointer(vad, audio) if isinstance(e, Utterance)]
    assert len(utts) == 2


def test_a_long_utterance_is_cut_at_the_maximum(vad):
    long = np.concatenate([speech("this is a very long sentence that goes on and on")] * 3)
    utts = [e for e in run_endpointer(vad, long, max_utterance=2.0) if isinstance(e, Utterance)]
    assert utts and utts[0].cut and utts[0].seconds <= 2.05


def test_silence_and_noise_give_no_utterance(vad):
    rng = np.random.default_rng(1)
    noise = (rng.standard_normal(16000 * 3) * 0.01).astype(np.float32)
    tone = (0.2 * np.sin(2 * np.pi * 1000 * np.arange(16000 * 2) / 16000)).astype(np.float32)
    for audio in (silence(3.0), noise, tone):
        assert not [e for e in run_endpointer(vad, audio) if isinstance(e, Utterance)]


def test_a_short_sound_is_not_a_barge_in(vad):
    """A click of 100 ms of loud noise: at most a dropped blip, never a barge-in."""
    rng = np.random.default_rng(2)
    click = (rng.standard_normal(1600) * 0.5).astype(np.float32)
    events = run_endpointer(vad, np.concatenate([silence(0.5), click, silence(1.0)]))
    assert not [e for e in events if isinstance(e, (Barge, Utterance))]


def test_endpointer_backchannel_under_the_barge_threshold_does_not_barge():
    """Pure logic: 7 voiced chunks (224 ms) < 250 ms: an utterance, but no barge."""
    ep = Endpointer(barge_min_speech=0.25, min_speech=0.1)
    chunk = np.zeros(512, np.float32)
    events = []
    for prob in [0.9] * 7 + [0.0] * 12:
        events += ep.feed(prob, chunk)
    assert [type(e) for e in events] == [Onset, Utterance]
    ep2 = Endpointer(barge_min_speech=0.25, min_speech=0.1)
    events = []
    for prob in [0.9] * 2 + [0.0] * 12:
        events += ep2.feed(prob, chunk)
    assert [type(e) for e in events] == [Onset, Dropped]


class FakeAsr:
    def __init__(self, text="claim status"):
        self.text, self.calls = text, []

    async def __call__(self, audio, lang, hints):
        self.calls.append((len(audio) / 16000, lang, hints))

        class T:
            text = self.text
            confidence = 0.9
        return T()


def feed(listener: SpeechListener, audio: np.ndarray) -> None:
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    for i in range(0, len(pcm), 640):
        listener.audio(pcm[i:i + 640], 16000)


async def test_listener_barges_in_over_an_interruptible_prompt_and_recognises_the_words(vad):
    barged = []
    asr = FakeAsr()
    ear = SpeechListener(vad.stream(), Endpointer(), asr, on_barge=lambda: barged.append(1))
    ear.prompt(barge=True, lang="en", hints=("claims",))
    feed(ear, np.concatenate([silence(0.5), speech("check my claim status please"), silence(0.6)]))
    heard = await ear.result(timeout=1)
    assert barged == [1] and ear.barged_at is not None
    assert heard.text == "claim status"
    assert asr.calls[0][1:] == ("en", ("claims",))


async def test_listener_ignores_speech_over_a_locked_prompt(vad):
    ear = SpeechListener(vad.stream(), Endpointer(), FakeAsr())
    ear.prompt(barge=False, lang="en")
    feed(ear, np.concatenate([silence(0.3), speech("hello there"), silence(0.6)]))
    ear.listen(lang="en")
    assert await ear.result(timeout=0.2) is None


async def test_listener_drops_an_utterance_the_recogniser_finds_no_words_in(vad):
    ear = SpeechListener(vad.stream(), Endpointer(), FakeAsr(text=""))
    ear.listen(lang="en")
    feed(ear, np.concatenate([silence(0.3), speech("hmm hmm"), silence(0.6)]))
    assert await ear.result(timeout=0.3) is None
    assert not ear.busy


async def test_listener_returns_none_when_the_stream_closes(vad):
    ear = SpeechListener(vad.stream(), Endpointer(), FakeAsr())
    ear.listen(lang="en")
    asyncio.get_running_loop().call_later(0.1, ear.stream_closed)
    assert await ear.result(timeout=5) is None


async def test_listener_upsamples_8khz_frames(vad):
    ear = SpeechListener(vad.stream(), Endpointer(), FakeAsr())
    ear.listen(lang="en")
    audio = np.concatenate([silence(0.3), speech("my card is lost"), silence(0.6)])[::2]
    pcm = (audio * 32767).astype("<i2").tobytes()
    for i in range(0, len(pcm), 320):
        ear.audio(pcm[i:i + 320], 8000)
    assert (await ear.result(timeout=1)).text == "claim status"
