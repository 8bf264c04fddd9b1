"""The short-audio path on real recordings: slices cut at pauses, against the 30 s path.

Real recordings come with no script, so the reference is a stronger model's 30 s
path (`base`, beam 5, English): a pseudo-reference, good for comparing the two paths
of the small model with each other, not for absolute word error rates. Each
recording is cut into `--per-file` slices of 2-8 s that start and end in a pause
(three quiet 100 ms frames in a row, quiet = the recording's quietest quarter),
the way a voice command starts and ends. Each slice is transcribed by the small
model twice (`Options.short_path` on and off); reported: corpus WER of each path
against the reference, words the two paths differ by, how often the short path
fell back, and the engine seconds of each.

    .venv/bin/python bench/real_speech.py RECORDING... [--model tiny.en] [--engine faster-whisper]
        [--per-file 20] [--seed 7]

Where the recordings behind docs/performance.md's figures come from is written there
(they are not in this repository: their licences are unclear).
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import ROOT, progress, table  # noqa: E402
from bench.wer import normalize, word_errors  # noqa: E402

CACHE = ROOT / ".cache"
HOP = 1600  # 100 ms at 16 kHz


def pauses(pcm: np.ndarray) -> list[int]:
    """Sample offsets in the middle of pauses: three quiet 100 ms frames in a row."""
    rms = np.array([np.sqrt(np.mean(pcm[i : i + HOP] ** 2)) for i in range(0, len(pcm) - HOP, HOP)])
    quiet = rms <= np.percentile(rms, 25)
    return [i * HOP + HOP // 2 for i in range(1, len(rms) - 1) if quiet[i - 1] and quiet[i] and quiet[i + 1]]


def slices(paths: list[Path], per_file: int, rng: random.Random) -> list[tuple[str, np.ndarray]]:
    from whisperd.daemon.audio import decode_audio

    out = []
    for path in paths:
        pcm = decode_audio(path.read_bytes())
        cuts = pauses(pcm)
        for _ in range(per_file):
            want = rng.uniform(2.0, 8.0) * 16000
            start = rng.choice(cuts)
            ends = [b for b in cuts if b > start + 0.8 * want]
            if not ends:
                continue
            end = min(ends, key=lambda b: abs(b - start - want))
            if end - start <= 12 * 16000:
                out.append((f"{path.stem}@{start / 16000:.1f}-{end / 16000:.1f}", pcm[start:end]))
    return out


FALLBACK_PREFIX = "short_path_fallback_"


def fallbacks_since(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The engine's short-path fallbacks between two `counters()` snapshots, by reason."""
    return {k.removeprefix(FALLBACK_PREFIX).replace("_", " "): after[k] - before.get(k, 0)
            for k in after if k.startswith(FALLBACK_PREFIX) and after[k] > before.get(k, 0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("recordings", nargs="+", type=Path)
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--engine", default="faster-whisper")
    ap.add_argument("--reference", default="base", help="the model whose 30 s path is the reference")
    ap.add_argument("--per-file", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("-v", "--verbose", action="store_true", help="print every slice's three transcripts")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from whisperd.daemon.models import resolve_model
    from whisperd.engines import load_engine
    from whisperd.engines.base import Options

    data = slices(args.recordings, args.per_file, random.Random(args.seed))
    progress(f"{len(data)} slices from {len(args.recordings)} recordings")
    # The engines' default compute types: int8 for faster-whisper, float32 for openai-whisper on CPU.
    reference = load_engine("faster-whisper", resolve_model(args.reference, CACHE), cache_dir=str(CACHE))
    engine = load_engine(args.engine, resolve_model(args.model, CACHE), cache_dir=str(CACHE))
    before = engine.counters()  # why the short path fell back: the engine counts it by reason
    errors = {"short": 0, "30 s": 0}
    seconds = {"short": 0.0, "30 s": 0.0}
    words = differ = 0
    for name, pcm in data:
        ref = reference.transcribe(pcm, Options(language="en")).text
        got = {}
        for path, short in (("short", True), ("30 s", False)):
            t = time.perf_counter()
            result = engine.transcribe(pcm, Options(short_path=short))
            seconds[path] += time.perf_counter() - t
            got[path] = result.text
            errors[path] += word_errors(ref, result.text)[0]
        words += len(normalize(ref))
        differ += word_errors(got["30 s"], got["short"])[0]
        if args.verbose:
            print(f"{name}\n  ref   {ref!r}\n  short {got['short']!r}\n  30 s  {got['30 s']!r}", flush=True)
    n = len(data)
    reasons = fallbacks_since(before, engine.counters())
    why = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) or "none"
    print(table(
        ["model", "engine", "slices", "reference words", "WER short %", "WER 30 s %", "words differ",
         "short path fell back", "short s/slice", "30 s s/slice"],
        [[args.model, args.engine, n, words, 100 * errors["short"] / words, 100 * errors["30 s"] / words,
          differ, f"{sum(reasons.values())}/{n} ({why})", seconds["short"] / n, seconds["30 s"] / n]],
    ))


if __name__ == "__main__":
    main()
