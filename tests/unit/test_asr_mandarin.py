"""Mandarin recognition and language detection on natural Mandarin speech at 8 kHz (recorded
fixtures: tests/fixtures/audio/README.md), with the real whisper-base model."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ivr.speech.asr import AsrPool, read_audio_16k

AUDIO = Path(__file__).resolve().parents[1] / "fixtures" / "audio"


@pytest.fixture(scope="module")
def pool(config):
    p = AsrPool(config.speech)
    yield p
    p.close()


def transcribe(pool, name, lang, hints=(), detect=()):
    return asyncio.run(pool.transcribe(read_audio_16k(AUDIO / f"{name}.wav"), lang, hints, detect=detect))


def cer(ref: str, hyp: str) -> float:
    ref = [c for c in ref if c.isalnum()]
    hyp = [c for c in hyp if c.isalnum()]
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / max(len(ref), 1)


@pytest.mark.parametrize("name,words,hints", [
    ("zh_card_lost", "我的信用卡丢了", ()),
    ("zh_no", "不是", ("是", "不是")),
    ("zh_digits", "4567", ()),
    ("zh_claim_progress", "我想查一下理赔进度", ("理赔", "进度")),
])
def test_mandarin_phrases_are_recognised(pool, name, words, hints):
    text = transcribe(pool, name, "zh", hints).text
    assert cer(words, text) <= 0.25, text  # honest bar: one slip in four characters


def test_an_unknown_callers_mandarin_is_told_apart_by_ear(pool):
    t = transcribe(pool, "zh_card_lost", "en", detect=("en", "zh"))
    assert t.lang == "zh" and "信用卡" in t.text, t


def test_english_stays_english_when_detecting(pool, tmp_path, config):
    from ivr.speech.voices import say_to_file

    say_to_file(config.speech, "I lost my credit card", "en", tmp_path / "en.wav")
    t = asyncio.run(pool.transcribe(read_audio_16k(tmp_path / "en.wav"), "en", (), detect=("en", "zh")))
    assert t.lang == "en" and "credit card" in t.text.lower(), t
