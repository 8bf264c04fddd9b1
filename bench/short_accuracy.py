"""Is the short-audio path as accurate as the 30 s path? Word error rate on short commands.

48 short voice commands (16 scripts × 3 espeak-ng voice/speed settings, 1-5 s;
every third clip with white noise at ~12 dB SNR) are transcribed by each engine
on each model twice, interleaved: once on the ordinary 30 s path and once with
`Options.short_path`. Reported per (model, engine): corpus WER of each path
against the scripts (bench/wer.py's normalizer), how many clips the two paths
transcribe differently, how often the short path's guard fell back to the 30 s
path, and the median engine-only seconds of each. Options are the daemon's
defaults (beam 5, temperature fallback, language detected on `base`).

    .venv/bin/python bench/short_accuracy.py [--models tiny.en,base] [--engines faster-whisper,openai-whisper]
        [--beam 5] [--clips N] [--json out.json]

Prints a table; `bench/commands.py` runs it too and puts it in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import ROOT, median, progress, table  # noqa: E402
from bench.speech import COMMANDS  # noqa: E402
from bench.wer import normalize, word_errors  # noqa: E402

CACHE = ROOT / ".cache"
SCRIPTS = COMMANDS + [
    "open the garage door",
    "what time is it in London",
    "remind me to water the plants at six",
    "turn the volume down a little",
    "send a message to John saying I am running late",
    "pause the video",
    "how far is the nearest train station",
    "switch off the bedroom fan",
    "read my new emails",
    "stop",
]
# (espeak-ng voice, words per minute)
VOICES = [("en-us", 150), ("en-gb", 175), ("en+f3", 135), ("en-us+m3", 190), ("en-gb+f2", 160)]
NOISE_EVERY = 3
NOISE_SNR_DB = 12.0


def clips(n: int = 48) -> list[tuple[str, np.ndarray, str]]:
    """(script, 16 kHz float32 audio, description), deterministic."""
    from whisperd.daemon.audio import decode_audio

    rng = np.random.default_rng(9)
    out = []
    for i in range(n):
        text = SCRIPTS[i % len(SCRIPTS)]
        voice, speed = VOICES[(i + i // len(SCRIPTS)) % len(VOICES)]
        wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text],
                             capture_output=True, check=True).stdout
        pcm = decode_audio(wav)
        desc = f"{voice} {speed} wpm"
        if i % NOISE_EVERY == NOISE_EVERY - 1:
            power = float(np.mean(pcm**2))
            noise = rng.standard_normal(len(pcm)).astype(np.float32) * np.sqrt(power / 10 ** (NOISE_SNR_DB / 10))
            pcm = (pcm + noise).astype(np.float32)
            desc += f", noise {NOISE_SNR_DB:g} dB"
        out.append((text, pcm, desc))
    return out


def run(model_name: str, engine_name: str, data: list[tuple[str, np.ndarray, str]], beam: int) -> dict:
    from whisperd.daemon.models import installed_models
    from whisperd.engines import load_engine
    from whisperd.engines.base import Options

    progress(f"accuracy: {model_name} / {engine_name}, {len(data)} clips, both paths")
    model = installed_models(CACHE)[model_name]
    engine = load_engine(engine_name, model, cache_dir=str(CACHE))
    engine.transcribe(data[0][1], Options(beam_size=beam))  # warm-up, both paths
    engine.transcribe(data[0][1], Options(beam_size=beam, short_path=True))
    before = engine.counters()  # the engine counts every short-path fallback, by reason
    res: dict = {"full": {"err": 0, "sec": [], "text": []}, "short": {"err": 0, "sec": [], "text": []},
                 "words": 0, "differ": 0, "fallbacks": 0, "n": len(data)}
    for i, (script, pcm, _) in enumerate(data):
        order = ("full", "short") if i % 2 == 0 else ("short", "full")  # interleaved: load hits both
        for path in order:
            t0 = time.perf_counter()
            got = engine.transcribe(pcm, Options(beam_size=beam, short_path=path == "short")).text
            res[path]["sec"].append(time.perf_counter() - t0)
            res[path]["text"].append(got)
            errors, words = word_errors(script, got)
            res[path]["err"] += errors
            if path == "full":
                res["words"] += words
        res["differ"] += normalize(res["full"]["text"][-1]) != normalize(res["short"]["text"][-1])
        if (i + 1) % 12 == 0 and i + 1 < len(data):
            progress(f"accuracy: {model_name} / {engine_name}: {i + 1}/{len(data)} clips")
    after = engine.counters()
    res["fallbacks"] = sum(after[k] - before.get(k, 0) for k in after if k.startswith("short_path_fallback_"))
    return res


def rows(results: dict[tuple[str, str], dict]) -> list[list[object]]:
    out = []
    for (model, engine), r in results.items():
        out.append([
            model, engine, r["n"],
            f"{100 * r['full']['err'] / r['words']:.1f} %", f"{100 * r['short']['err'] / r['words']:.1f} %",
            r["differ"], f"{r['fallbacks']} ({100 * r['fallbacks'] / r['n']:.0f} %)",
            median(r["full"]["sec"]), median(r["short"]["sec"]),
        ])  # fmt: skip
    return out


HEADERS = ["model", "engine", "clips", "WER 30 s path", "WER short path", "clips transcribed differently",
           "short path fell back", "median s, 30 s path", "median s, short path"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="tiny.en,base")
    ap.add_argument("--engines", default="faster-whisper,openai-whisper")
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--clips", type=int, default=48)
    ap.add_argument("--json", help="also write the raw results here")
    args = ap.parse_args()
    data = clips(args.clips)
    progress(f"{len(data)} clips, {min(len(p) for _, p, _ in data) / 16000:.1f}-"
             f"{max(len(p) for _, p, _ in data) / 16000:.1f} s")
    results = {}
    for model in args.models.split(","):
        for engine in args.engines.split(","):
            results[(model, engine)] = run(model, engine, data, args.beam)
    print(table(HEADERS, rows(results)))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {f"{m}|{e}": {**r, "scripts": [s for s, _, _ in data], "clips": [d for _, _, d in data]}
             for (m, e), r in results.items()}, indent=1))


if __name__ == "__main__":
    main()
