"""What include[]=logprobs costs: the same clip with and without it, in-process, interleaved.

Both engines on tiny.en, the daemon's defaults (beam 5, the short path on): the
11 s JFK recording (the short path) and the 32.6 s long clip (two 30 s windows).
Prints the best of `--repeats` per cell, wall and CPU seconds (CPU time is the
steadier measure on a shared machine), and the ratios.

    .venv/bin/python bench/logprobs_cost.py [--repeats N] [--threads N] [--engines faster-whisper,openai-whisper]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--engines", default="faster-whisper,openai-whisper")
    args = parser.parse_args()

    from testing.speech import JFK_FILE, LONG_FILE
    from whisperd.daemon.audio import decode_audio
    from whisperd.daemon.models import installed_models
    from whisperd.engines import load_engine
    from whisperd.engines.base import Options

    cache = ROOT / ".cache"
    model = installed_models(cache)["tiny.en"]
    clips = {"jfk.wav 11 s": decode_audio(JFK_FILE.read_bytes()), "long.mp3 32.6 s": decode_audio(LONG_FILE.read_bytes())}
    print("| engine | clip | wall without | wall with | ratio | CPU without | CPU with | ratio |\n"
          "|---|---|---|---|---|---|---|---|")
    for name in args.engines.split(","):
        extra = {"cache_dir": str(cache)} if name == "openai-whisper" else {}
        engine = load_engine(name, model, cpu_threads=args.threads, **extra)
        for label, audio in clips.items():
            wall = {False: float("inf"), True: float("inf")}
            cpu = dict(wall)
            for _ in range(args.repeats):
                for asked in (False, True):  # interleaved: load on the machine hits both alike
                    started, started_cpu = time.perf_counter(), time.process_time()
                    engine.transcribe(audio, Options(short_path=True, logprobs=asked))
                    wall[asked] = min(wall[asked], time.perf_counter() - started)
                    cpu[asked] = min(cpu[asked], time.process_time() - started_cpu)
            print(f"| {name} | {label} | {wall[False]:.3f} s | {wall[True]:.3f} s | {wall[True] / wall[False]:.2f}× "
                  f"| {cpu[False]:.3f} s | {cpu[True]:.3f} s | {cpu[True] / cpu[False]:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
