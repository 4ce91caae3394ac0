"""ASR benchmark helpers: `bench_asr(speech_cfg) -> dict` (JSON-able), called by bench_speech.py;
`python tests/bench/speech_asr.py [--quick]` prints the same JSON.

Utterances are synthesised (piper joe for English, espeak-ng for Mandarin), put through a phone
line (8 kHz 16-bit) and back to 16 kHz, as callers' audio arrives. Measured:

  latency      one 2-3 s utterance at a time, one CPU thread: p50/p95 seconds and real-time
               factor, for whisper-base and tiny.en, 10 s window vs Whisper's 30 s padding
  throughput   utterances/s through AsrPool with 1 and 2 workers (one shared model), through two
               separate models, and batched generate() calls of 2 and 4 utterances
  accuracy     English WER (piper, 32 hotline phrases; target <= 10%) and Mandarin CER
               (espeak-ng, a poor voice: its figure is a floor, not what callers get)

Every figure is measured on the machine running it; `machine` says what else was running.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import re
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a plain script
    sys.path.insert(0, str(REPO))

WER_TARGET = 0.10

EN_PHRASES = [
    "I lost my credit card", "check my claim status", "four five six seven",
    "I want to speak to an agent", "my card was stolen yesterday", "what is my account balance",
    "I would like to pay my bill", "yes please", "no thank you", "can you repeat that",
    "I need to reset my password", "there is a charge I do not recognize", "transfer money to savings",
    "my policy number is seven seven zero four", "when is my payment due",
    "I want to file a new claim", "please block my debit card", "how do I change my address",
    "the app will not let me log in", "I was in a car accident",
]
LONGER_PHRASES = [  # 2-3 s with the piper voice: the latency and throughput clips
    "I would like to check the status of my claim", "my credit card was stolen at the airport",
    "please transfer me to a customer service agent", "I want to report a suspicious charge on my account",
    "can I change the due date of my payment", "my account number is four five six seven",
    "I need a new card because mine is broken", "how much do I still owe on my loan",
    "I moved and need to update my address", "I did not receive the text message with the code",
    "I want to close my savings account", "is there a fee for an international transfer",
]
ZH_PHRASES = [  # (phrase, hints a menu step would pass)
    ("我的信用卡丢了", ("信用卡", "理赔", "人工服务")), ("查询理赔进度", ("信用卡", "理赔", "人工服务")),
    ("我要转人工服务", ("信用卡", "理赔", "人工服务")), ("我想挂失信用卡", ("挂失", "理赔", "人工服务")),
    ("我的账户被冻结了", ()), ("请帮我查一下余额", ("余额", "转账", "人工")), ("我要投诉", ("投诉", "咨询")),
    ("是的", ("是", "不是")), ("不是", ("是", "不是")), ("我想修改密码", ()), ("谢谢你的帮助", ()),
    ("我要还款", ("还款", "账单", "人工")), ("查询账单", ("还款", "账单", "人工")), ("四五六七", ()),
]


# --- audio -------------------------------------------------------------------------------------

class Voices:
    """English from piper (espeak-ng if piper is missing), Mandarin from espeak-ng; all at 8 kHz
    then 16 kHz int16, like a call."""

    def __init__(self, speech_cfg) -> None:
        self.en_voice = "espeak-ng en-us"
        self._piper = None
        try:
            from piper import PiperVoice

            from ivr.speech.models import piper_voice_path

            self._piper = PiperVoice.load(str(piper_voice_path(speech_cfg, speech_cfg.piper_voice)))
            self.en_voice = f"piper {speech_cfg.piper_voice}"
        except Exception as e:  # noqa: BLE001 - benchmark still runs with espeak
            self.en_voice += f" (piper unavailable: {e})"

    def en(self, text: str):
        import numpy as np

        if self._piper is None:
            return self._espeak(text, "en")
        chunks = list(self._piper.synthesize(text))
        return _phone(np.concatenate([c.audio_float_array for c in chunks]) * 32767, chunks[0].sample_rate)

    def zh(self, text: str):
        return self._espeak(text, "zh")

    @staticmethod
    def _espeak(text: str, lang: str):
        from ivr.speech.tts import EspeakSynthesizer

        pcm = EspeakSynthesizer().synthesize(text, lang)
        return _phone(pcm.samples, pcm.rate)


def _phone(samples, rate: int):
    from ivr.speech.audio import resample

    return resample(resample(samples, rate, 8000), 8000, 16000)


# --- scoring -----------------------------------------------------------------------------------

def edit_distance(ref: list, hyp: list) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        diag, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            diag, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diag + (r != h))
    return row[-1]


def en_words(text: str) -> list[str]:
    """Words for WER: digits normalised the same way on both sides, no case nor punctuation."""
    from ivr.nlu.numbers import normalize_numbers

    return re.sub(r"[^\w' ]", " ", normalize_numbers(text, "en").lower()).split()


def zh_chars(text: str) -> list[str]:
    from ivr.nlu.numbers import normalize_numbers

    return list(re.sub(r"\W", "", normalize_numbers(text, "zh")))


def _busy_seconds() -> float:
    """CPU seconds every process has used since boot (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def contended(block):
    """Run block(); add `other_processes_cpu_cores` (CPU that others used meanwhile) to its dict:
    on 2 cores, any figure taken while others use a core is not this machine's capacity."""
    busy, own, wall = _busy_seconds(), time.process_time(), time.perf_counter()
    result = block()
    wall = time.perf_counter() - wall
    others = (_busy_seconds() - busy - (time.process_time() - own)) / wall
    return {**result, "other_processes_cpu_cores": round(max(0.0, others), 2)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


# --- measurements ------------------------------------------------------------------------------

def _recognizer(folder, **kw):
    from ivr.speech.asr import WhisperRecognizer

    rec = WhisperRecognizer(folder, **kw)
    rec.load()
    return rec


def latency(folder, clips: list, *, window: float, reps: int) -> dict:
    """One utterance at a time on one CPU thread (what one pool worker does)."""
    rec = _recognizer(folder, window=window, threads=1)
    rec.recognize(clips[0], "en")  # warm-up: first call sets up the VAD and the tokenizer
    times, audio = [], 0.0
    for _ in range(reps):
        for clip in clips:
            started = time.perf_counter()
            rec.recognize(clip, "en")
            times.append(time.perf_counter() - started)
            audio += len(clip) / 16000
    return {"window_s": window, "runs": len(times), "p50_s": round(percentile(times, 50), 3),
            "p95_s": round(percentile(times, 95), 3), "rtf": round(sum(times) / audio, 3)}


def pool_throughput(speech_cfg, clips: list, workers: int) -> dict:
    """Utterances/s through the real AsrPool (one model shared by `workers` threads)."""
    from ivr.speech.asr import AsrPool

    cfg = dataclasses.replace(speech_cfg, asr_workers=workers, asr_queue=len(clips) + 1,
                              asr_timeout=600.0, asr_model_en="")
    pool = AsrPool(cfg)
    pool.warm()

    async def run() -> float:
        await pool.transcribe(clips[0], "en")
        started = time.perf_counter()
        await asyncio.gather(*(pool.transcribe(c, "en") for c in clips))
        return time.perf_counter() - started
    elapsed = asyncio.run(run())
    pool.close()
    return {"workers": workers, "utterances": len(clips), "per_s": round(len(clips) / elapsed, 2)}


def separate_models_throughput(folder, clips: list, window: float) -> dict:
    """Two recognisers with their own copy of the model, one thread each."""
    recs = [_recognizer(folder, window=window, threads=1) for _ in range(2)]
    for r in recs:
        r.recognize(clips[0], "en")
    halves = [clips[0::2], clips[1::2]]
    started = time.perf_counter()
    threads = [threading.Thread(target=lambda r=r, h=h: [r.recognize(c, "en") for c in h])
               for r, h in zip(recs, halves)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return {"workers": 2, "models": 2, "utterances": len(clips), "per_s": round(len(clips) / elapsed, 2)}


def batched_throughput(folder, clips: list, window: float, batch: int, threads: int) -> dict:
    """Several utterances in one generate() call, from one Python thread."""
    rec = _recognizer(folder, window=window, threads=threads)
    rec.recognize_many(clips[:batch], "en")
    started = time.perf_counter()
    for i in range(0, len(clips), batch):
        rec.recognize_many(clips[i:i + batch], "en")
    elapsed = time.perf_counter() - started
    return {"batch": batch, "cpu_threads": threads, "utterances": len(clips),
            "per_s": round(len(clips) / elapsed, 2)}


def english_wer(folder, voices: Voices, window: float) -> dict:
    rec = _recognizer(folder, window=window, threads=1)
    edits = words = 0
    misses = []
    phrases = EN_PHRASES + LONGER_PHRASES
    for phrase in phrases:
        hyp = rec.recognize(voices.en(phrase), "en").text
        ref_w, hyp_w = en_words(phrase), en_words(hyp)
        e = edit_distance(ref_w, hyp_w)
        edits, words = edits + e, words + len(ref_w)
        if e:
            misses.append({"said": phrase, "heard": hyp})
    wer = edits / words
    return {"phrases": len(phrases), "words": words, "wer": round(wer, 3), "target": WER_TARGET,
            "pass": wer <= WER_TARGET, "misses": misses}


def mandarin_cer(folder, voices: Voices, window: float) -> dict:
    rec = _recognizer(folder, window=window, threads=1)
    out = {}
    for label, use_hints in (("with_hints", True), ("without_hints", False)):
        edits = chars = 0
        heard = []
        for phrase, hints in ZH_PHRASES:
            t = rec.recognize(voices.zh(phrase), "zh", hints if use_hints else ())
            ref = zh_chars(phrase)
            edits, chars = edits + edit_distance(ref, zh_chars(t.text)), chars + len(ref)
            heard.append(f"{phrase} -> {t.text or '(' + t.rejected + ')'}")
        out[label] = {"cer": round(edits / chars, 3), "chars": chars, "heard": heard}
    return out


# --- the whole thing ---------------------------------------------------------------------------

def bench_asr(speech_cfg, *, quick: bool = False) -> dict:
    from ivr.speech.models import asr_model_path

    base = asr_model_path(speech_cfg, speech_cfg.asr_model)
    tiny = asr_model_path(speech_cfg, speech_cfg.asr_model_en or "whisper-tiny.en")
    window = speech_cfg.asr_window
    voices = Voices(speech_cfg)
    clips = [voices.en(p) for p in LONGER_PHRASES]
    reps = 1 if quick else 3
    report = {
        "machine": {"cpus": os.cpu_count(), "loadavg_before": [round(x, 2) for x in os.getloadavg()]},
        "voices": {"en": voices.en_voice, "zh": "espeak-ng cmn-latn-pinyin"},
        "clips": {"count": len(clips), "seconds_min": round(min(len(c) for c in clips) / 16000, 2),
                  "seconds_max": round(max(len(c) for c in clips) / 16000, 2)},
        "latency": {},
    }
    for name, folder in ((Path(base).name, base), (Path(tiny).name, tiny)):
        report["latency"][name] = {
            f"window_{w:g}s": contended(lambda f=folder, w=w: latency(f, clips, window=w, reps=reps))
            for w in (window, 30.0)}
    many = clips * (2 if quick else 4)
    report["throughput"] = {
        "model": Path(base).name, "window_s": window,
        "pool_1_worker": contended(lambda: pool_throughput(speech_cfg, many, 1)),
        "pool_2_workers_shared_model": contended(lambda: pool_throughput(speech_cfg, many, 2)),
        "two_separate_models": contended(lambda: separate_models_throughput(base, many, window)),
        "batched": [contended(lambda b=b, t=t: batched_throughput(base, many, window, b, t))
                    for b in (2, 4) for t in (1, 2)],
    }
    report["accuracy"] = {
        "english_wer": {Path(f).name: english_wer(f, voices, window) for f in (base, tiny)},
        "mandarin_cer": {Path(base).name: mandarin_cer(base, voices, window)},
    }
    report["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return report


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one pass per latency, fewer utterances")
    parser.add_argument("--config", default=str(REPO / "config.yaml"))
    args = parser.parse_args(argv)
    from ivr.config import load_config

    return bench_asr(load_config(args.config).speech, quick=args.quick)


if __name__ == "__main__":
    print(json.dumps(main(), ensure_ascii=False, indent=2))
