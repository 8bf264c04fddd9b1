"""Voice-command latency while a long recording is transcribed: windows vs whole files vs single lane.

Through the real stack (HTTP → shim → socket → daemon), in one run:
  1. idle: commands one after another, nothing else running;
  2. under load: the same commands one after another while an ≥ 80 s recording runs;
  3. a burst of 24 mixed requests at once (failures counted);
each with the pool cutting long files into windows (the default), with whole files on one
lane (`--window-mode whole`, before windows), and with cold workers off (single lane).
Also: cold spawn-to-ready, naive (a fresh interpreter imports and loads) vs the
pool's way (forked from the pre-imported fork server), for each engine.

    .venv/bin/python bench/latency_under_load.py [--commands N] [--engine faster-whisper]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402

from bench.report import (  # noqa: E402
    git_rev,
    machine,
    median,
    percentile,
    progress,
    table,
    update_section,
)
from bench.speech import commands, duration_s, long_recording  # noqa: E402
from testing.stack import Stack  # noqa: E402


async def post(session: aiohttp.ClientSession, url: str, wav: bytes, name: str = "a.wav") -> tuple[float, int, str]:
    form = aiohttp.FormData()
    form.add_field("model", "whisper-1")
    form.add_field("file", wav, filename=name)
    t0 = time.perf_counter()
    async with session.post(url + "/v1/audio/transcriptions", data=form) as r:
        await r.read()
        return time.perf_counter() - t0, r.status, r.headers.get("X-Whisperd-Worker", "?")


async def measure(stack: Stack, cmds: list[tuple[str, bytes]], long_wav: bytes, n: int) -> dict:
    url = stack.url
    timeout = aiohttp.ClientTimeout(total=1800)
    async with aiohttp.ClientSession(timeout=timeout) as s:
        for _, wav in cmds[:2]:  # warm-up
            await post(s, url, wav)
        idle = []
        for i in range(n):
            t, status, _ = await post(s, url, cmds[i % len(cmds)][1])
            assert status == 200
            idle.append(t)
        progress(f"idle median {median(idle):.3f} s")
        long_task = asyncio.ensure_future(post(s, url, long_wav, "long.wav"))
        await asyncio.sleep(1.0)  # the long file is decoded and running
        loaded, workers = [], []
        i = 0
        while not long_task.done() and len(loaded) < n:
            t, status, worker = await post(s, url, cmds[i % len(cmds)][1])
            assert status == 200
            loaded.append(t)
            workers.append(worker)
            i += 1
        long_t, long_status, long_worker = await long_task
        progress(f"under load median {median(loaded):.3f} s over {len(loaded)} commands; long file {long_t:.1f} s")
        # Burst: 12 commands at once (median of 3).
        bursts12 = []
        for _ in range(3):
            t0 = time.perf_counter()
            done12 = await asyncio.gather(*[post(s, url, cmds[i % len(cmds)][1]) for i in range(12)])
            bursts12.append(time.perf_counter() - t0)
            assert all(r[1] == 200 for r in done12)
        progress(f"burst of 12 commands: {median(bursts12):.2f} s")
        # Burst: 24 mixed requests at once.
        mixed = [cmds[i % len(cmds)][1] for i in range(20)] + [long_wav[: len(long_wav) // 3]] * 4
        t0 = time.perf_counter()
        results = await asyncio.gather(*[post(s, url, w) for w in mixed], return_exceptions=True)
        burst_wall = time.perf_counter() - t0
        failures = sum(1 for r in results if isinstance(r, Exception) or r[1] != 200)
        progress(f"burst of 24: {burst_wall:.1f} s, {failures} failures")
    return {"idle": idle, "loaded": loaded, "workers": workers, "long_s": long_t, "long_worker": long_worker,
            "burst_wall": burst_wall, "burst_failures": failures, "burst12": median(bursts12)}


def spawn_to_ready(engine: str, repeats: int) -> dict[str, list[float]]:
    """Naive: a fresh interpreter imports everything, then loads. Pool: fork-server child loads."""
    import multiprocessing

    from testing.stack import CACHE
    from whisperd.daemon.lanes.cold import ColdLane, fork_context, warm_fork_server
    from whisperd.daemon.models import resolve_model

    model = resolve_model("tiny.en", CACHE)
    results: dict[str, list[float]] = {"naive": [], "pool": []}

    async def run(context) -> float:
        w = ColdLane("bench", model, engine=engine, device="cpu", compute_type="auto", threads=1,
                     cache_dir=str(CACHE), context=context)
        await w.start()  # returns once the worker is ready or dead
        took = w.spawn_to_ready_s
        w.close()
        await w.wait_closed(10)
        if took is None:
            raise RuntimeError(f"worker failed: {w.fatal}")
        return took

    naive = multiprocessing.get_context("spawn")
    warm_fork_server(engine == "openai-whisper")
    pool = fork_context(engine == "openai-whisper")
    for _ in range(repeats):
        results["naive"].append(asyncio.run(run(naive)))
        results["pool"].append(asyncio.run(run(pool)))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=10, help="commands per phase")
    parser.add_argument("--engine", default="faster-whisper")
    parser.add_argument("--spawn-repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/performance.md")
    parser.add_argument("--spawn-only", metavar="ENGINE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.spawn_only:
        print(json.dumps(spawn_to_ready(args.spawn_only, args.spawn_repeats)))
        return 0

    cmds = commands()
    long_text, long_wav = long_recording(80.0)
    long_s = duration_s(long_wav)
    cmd_s = [duration_s(w) for _, w in cmds]
    print(f"machine: {machine()}")
    print(f"commands: {len(cmds)} clips of {min(cmd_s):.1f}-{max(cmd_s):.1f} s; long recording {long_s:.0f} s")

    runs = {}
    modes = (("windows, hot + cold workers", ()),
             ("whole files, hot + cold workers (before windows)", ("--window-mode", "whole")),
             ("single lane (cold off)", ("--max-cold-workers", "0")))
    for label, extra in modes:
        progress(f"{label}: starting the stack")
        stack = Stack("--engine", args.engine, *extra)
        try:
            runs[label] = measure_sync(stack, cmds, long_wav, args.commands)
        finally:
            stack.stop()

    rows = []
    for label, r in runs.items():
        idle_med = median(r["idle"])
        rows.append([label, idle_med, median(r["loaded"]), percentile(r["loaded"], 95),
                     f"{median(r['loaded']) / idle_med:.2f}", len(r["loaded"]), r["long_worker"],
                     r["long_s"], r["burst12"], r["burst_wall"], r["burst_failures"]])
    headers = ["mode", "idle median s", "under load median s", "under load p95 s", "load ÷ idle",
               "commands under load", "long file on", "long file s", "burst of 12 commands s",
               "burst of 24 wall s", "burst failures"]
    load_table = table(headers, rows)
    print(load_table)

    spawn_rows = []
    for engine in ("faster-whisper", "openai-whisper"):
        progress(f"spawn-to-ready: {engine}")
        # Its own interpreter: the fork server's preload list depends on the engine.
        out = subprocess.run([sys.executable, __file__, "--spawn-only", engine,
                              "--spawn-repeats", str(args.spawn_repeats)],
                             capture_output=True, text=True, check=True).stdout
        sp = json.loads(out.strip().splitlines()[-1])
        spawn_rows.append([engine, median(sp["naive"]), median(sp["pool"]), percentile(sp["pool"], 95),
                           f"{median(sp['naive']) / median(sp['pool']):.1f}×"])
    spawn_table = table(["engine", "naive p50 s (fresh interpreter)", "pool p50 s (fork server)",
                         "pool p95 s", "speed-up"], spawn_rows)
    print(spawn_table)

    body = f"""## Voice commands under load (hot + cold workers)

`bench/latency_under_load.py` (commit {git_rev()}), {args.engine}, tiny.en, through HTTP.
Machine: {machine()}.
Commands: {len(cmds)} espeak-ng clips of {min(cmd_s):.1f}–{max(cmd_s):.1f} s sent one after another;
the load is one {long_s:.0f} s recording. Goal: under load ÷ idle ≤ 1.5 with the pool.

{load_table}

Cold worker spawn-to-ready (tiny.en, {args.spawn_repeats} spawns each; goals p50 ≤ 1.0 s faster-whisper, ≤ 1.5 s openai-whisper):

{spawn_table}
"""
    if not args.no_write:
        update_section("latency_under_load", body)
        print("written to docs/performance.md")
    return 0


def measure_sync(stack: Stack, cmds, long_wav: bytes, n: int) -> dict:
    return asyncio.run(measure(stack, cmds, long_wav, n))


if __name__ == "__main__":
    sys.exit(main())
