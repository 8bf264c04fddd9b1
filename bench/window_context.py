"""How text context should flow from window to window: measured, in-process, one lane.

A long recording is cut into windows at pauses (`whisperd.daemon.windows`, Silero).
Four ways to transcribe it with the same engine (faster-whisper int8, beam 5):

- `whole`: the recording in one call: faster-whisper's sequential 30 s loop,
  each window conditioned on the text before it (today's whole-file path);
- `windows`: each window on its own, the client's prompt only - any lane may take
  any window at once (what the daemon does);
- `windows+prev`: each window prompted with the previous window's text - which
  makes the windows a chain: window n+1 cannot start before window n ends;
- `windows+prev-parallel`: prompted with the text of the window two before, which
  is what a two-lane pipeline could know when a window starts.

Reported: corpus WER against each recording's reference transcript, and the engine
seconds (one thread, so the seconds compare the work, not the parallelism).

    .venv/bin/python bench/window_context.py [RECORDING.wav REFERENCE.txt]... [--threads 1]

With no arguments: JFK's 11 s said 8 times (tests/fixtures/jfk.wav).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import ROOT, progress, table  # noqa: E402
from bench.wer import word_errors  # noqa: E402

WAYS = ("whole", "windows", "windows+prev", "windows+prev-parallel")


def load_engine(threads: int):
    from whisperd.daemon.models import resolve_model
    from whisperd.engines.faster_whisper import FasterWhisperEngine

    cache = ROOT / ".cache"
    model = resolve_model("tiny.en", cache, cache / "models")
    return FasterWhisperEngine(model, device="cpu", compute_type="int8", cpu_threads=threads)


def transcribe(engine, pcm: np.ndarray, way: str) -> tuple[str, float]:
    from whisperd.daemon.windows import Windower, default_detector
    from whisperd.engines.base import Options

    started = time.process_time()
    if way == "whole":
        text = engine.transcribe(pcm, Options()).text
        return text, time.process_time() - started
    windows = list(Windower(default_detector("silero")).windows(iter([pcm])))
    texts: list[str] = []
    for i, window in enumerate(windows):
        lag = {"windows": None, "windows+prev": 1, "windows+prev-parallel": 2}[way]
        prompt = texts[i - lag] if lag and i - lag >= 0 else None
        texts.append(engine.transcribe(window.pcm, Options(prompt=prompt)).text)
    return " ".join(t.strip() for t in texts), time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="*", help="RECORDING REFERENCE pairs")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from whisperd.daemon.audio import decode_audio

    if args.pairs:
        pairs = [(Path(a), Path(b).read_text()) for a, b in zip(args.pairs[::2], args.pairs[1::2])]
    else:
        jfk = ROOT / "tests" / "fixtures"
        pairs = [(jfk / "jfk.wav", " ".join([(jfk / "jfk.txt").read_text()] * 8))]
    engine = load_engine(args.threads)
    totals = {w: [0, 0, 0.0] for w in WAYS}  # errors, words, seconds
    rows = []
    for path, reference in pairs:
        pcm = decode_audio(path.read_bytes())
        if path.name == "jfk.wav" and not args.pairs:
            pcm = np.tile(pcm, 8)
        for way in WAYS:
            progress(f"{path.name}: {way}")
            text, seconds = transcribe(engine, pcm, way)
            errors, words = word_errors(reference, text)
            totals[way][0] += errors
            totals[way][1] += words
            totals[way][2] += seconds
            rows.append([path.name, f"{len(pcm) / 16000:.0f}", way, f"{100 * errors / words:.1f}", f"{seconds:.1f}"])
    for way, (errors, words, seconds) in totals.items():
        rows.append(["**all**", "", way, f"{100 * errors / max(1, words):.1f}", f"{seconds:.1f}"])
    print(table(["recording", "seconds", "way", "WER %", "engine CPU s"], rows))


if __name__ == "__main__":
    main()
