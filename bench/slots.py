"""The hot worker's slots, engine only: how to split the cores between requests.

Each layout (slots × CPU threads per slot, CTranslate2's inter_threads ×
intra_threads on one shared copy of the weights) runs in its own process, so
its peak RSS is its own: tiny.en, faster-whisper int8, short path on, beam 5
and greedy. Measured per layout:

- one command: median wall time of single 1-3 s espeak-ng commands, one at a time;
- burst of 12: wall time for 12 commands submitted at once (as many in flight as slots);
- 30 s clip: the 32 s fixture alone on one slot (what a long file on the hot worker costs);
- peak RSS after all of it (every slot has decoded at least once).

The layout the daemon picks by default (`whisperd.daemon.policy.hot_layout`) is marked.
Results go to docs/performance.md, section "slots".

    .venv/bin/python bench/slots.py [--runs 3] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import ROOT, git_rev, machine, median, progress, table, update_section  # noqa: E402

BURST = 12


def layouts(cores: int, default: tuple[int, int]) -> list[tuple[int, int]]:
    """One slot with every core (the baseline), the default, one slot per core, and two per core."""
    return list(dict.fromkeys([(1, cores), default, (cores, 1), (min(4, 2 * cores), 1)]))


def measure_one(slots: int, threads: int, runs: int) -> dict:
    """In this process: load, warm every slot, time; returns the figures."""
    from bench.speech import commands
    from testing.stack import CACHE
    from whisperd.daemon.audio import decode_audio
    from whisperd.daemon.models import resolve_model
    from whisperd.engines import load_engine
    from whisperd.engines.base import Options

    engine = load_engine("faster-whisper", resolve_model("tiny.en", CACHE), device="cpu", compute_type="auto",
                         cpu_threads=threads, workers=slots)
    pcms = [decode_audio(wav) for _, wav in commands()]
    long_pcm = decode_audio((ROOT / "tests" / "fixtures" / "long.mp3").read_bytes())
    out: dict = {}
    with ThreadPoolExecutor(slots) as pool:
        for beam in (5, 1):
            opts = Options(beam_size=beam, short_path=True)
            list(pool.map(lambda p: engine.transcribe(p, opts), pcms[:slots] * 2))  # warm every slot
            singles = []
            for _ in range(runs):
                for pcm in pcms:
                    t0 = time.perf_counter()
                    engine.transcribe(pcm, opts)
                    singles.append(time.perf_counter() - t0)
            bursts = []
            for _ in range(runs):
                t0 = time.perf_counter()
                list(pool.map(lambda p: engine.transcribe(p, opts), (pcms * BURST)[:BURST]))
                bursts.append(time.perf_counter() - t0)
            out[f"beam {beam}"] = {"one": median(singles), "burst": median(bursts)}
    longs = []
    for _ in range(runs):
        t0 = time.perf_counter()
        engine.transcribe(long_pcm, Options(beam_size=5))
        longs.append(time.perf_counter() - t0)
    out["long"] = median(longs)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--one", nargs=2, type=int, metavar=("SLOTS", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure_one(*args.one, args.runs)))
        return 0
    cores = os.cpu_count() or 1
    from whisperd.daemon.policy import hot_layout

    default = hot_layout(cores=cores, slots=0, threads=0, engine="faster-whisper", device="cpu")
    load_at_start = "%.1f / %.1f / %.1f" % os.getloadavg()
    results = {}
    for slots, threads in layouts(cores, default):
        progress(f"{slots} slot(s) × {threads} thread(s)")
        proc = subprocess.run([sys.executable, __file__, "--one", str(slots), str(threads), "--runs", str(args.runs)],
                              capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 1
        results[(slots, threads)] = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = []
    for (slots, threads), r in results.items():
        mark = " (default)" if (slots, threads) == default else (" (one request at a time)" if slots == 1 else "")
        rows.append([f"{slots} × {threads}{mark}", r["beam 5"]["one"] * 1000, r["beam 5"]["burst"],
                     r["beam 1"]["one"] * 1000, r["beam 1"]["burst"], r["long"], r["peak_rss_mb"]])
    md = table(["slots × threads", "beam 5: one command ms", f"beam 5: burst of {BURST} s",
                "greedy: one command ms", f"greedy: burst of {BURST} s", "30 s clip on one slot s",
                "peak RSS MB"], rows)
    print(md)
    if args.no_write:
        return 0
    update_section("slots", f"""
## The hot worker's slots, engine only (bench/slots.py)

Measured {time.strftime('%Y-%m-%d')} at {git_rev()} on {machine()}; load average {load_at_start} at the
start. tiny.en, faster-whisper int8, short path on; each layout in its own process, medians of
{args.runs} runs; commands are espeak-ng, 1-3 s; a burst submits {BURST} at once.

{md}

A slot is a CTranslate2 replica sharing the one copy of the weights (`inter_threads`), with its
own threads (`intra_threads`); the daemon's default is `hot_slots = 0` (auto: up to 4 on CPU, the
hot worker's threads split between them). A single small decode does not use two threads well, so
one-thread slots cost a lone command little and let a burst use every core. Their price: each slot
that has run keeps its own working memory (peak RSS column), and a long file on the hot worker runs
on one slot's threads (it normally goes to a cold worker). openai-whisper keeps one slot (its decoder
installs kv-cache hooks on the shared model) and so does CUDA (each slot would be another copy in VRAM).
""")
    print("written to docs/performance.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
