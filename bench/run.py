"""`make bench`: every benchmark in turn, each in its own interpreter, progress on stderr.

    engines             bench/engines.py             engines × models × beams × clips: speed, memory, WER
    overhead            bench/overhead.py            server overhead, no-op ceiling, py-spy profile
    latency_under_load  bench/latency_under_load.py  voice commands while a long file runs; cold spawn
    commands            bench/commands.py            single commands and bursts of 12, short path accuracy
    slots               bench/slots.py               the hot worker's slots × threads, engine only
    long_audio          bench/long_audio.py          long real speech: whole file vs windows vs the peers
    live                bench/live.py                live speech through each front vs wyoming-faster-whisper
    scale_out           bench/scale_out.py           1, 2, 3 hosts behind HAProxy, and with faults

Each writes its own section of docs/performance.md (and its plots under docs/).
A failing benchmark is reported and the others still run; the exit code is 1 if any failed.

    .venv/bin/python bench/run.py [--quick] [--only engines,overhead] [--no-write]
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

# name → (script, extra arguments for --quick)
BENCHES = {
    "engines": ("engines.py", ["--quick"]),
    "overhead": ("overhead.py", ["--quick"]),
    "latency_under_load": ("latency_under_load.py", ["--commands", "3", "--spawn-repeats", "2"]),
    "commands": ("commands.py", ["--n", "4", "--bursts", "1", "--clips", "12"]),
    "slots": ("slots.py", ["--runs", "1"]),
    "long_audio": ("long_audio.py", ["--quick"]),
    "live": ("live.py", ["--quick"]),
    "scale_out": ("scale_out.py", []),
}


def say(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


def check_tools() -> None:
    if importlib.util.find_spec("matplotlib") is None:
        say("matplotlib is missing: tables only, no plots (pip install -r requirements/bench.txt)")
    if not (Path(sys.executable).parent / "py-spy").exists() and shutil.which("py-spy") is None:
        say("py-spy is missing: no profile (pip install -r requirements/bench.txt)")
    if shutil.which("wrk") is None:
        say("wrk is missing: the ceiling uses an in-process aiohttp client instead (apt-get install wrk)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer runs: a check that everything works")
    parser.add_argument("--only", default=",".join(BENCHES), help="comma-separated subset of: " + ", ".join(BENCHES))
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/performance.md")
    args = parser.parse_args()
    chosen = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = [b for b in chosen if b not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    check_tools()
    started = time.monotonic()
    outcomes = []
    for i, name in enumerate(chosen, 1):
        script, quick_args = BENCHES[name]
        cmd = [sys.executable, str(BENCH / script), *(quick_args if args.quick else []),
               *(["--no-write"] if args.no_write else [])]
        say(f"[{i}/{len(chosen)}] {name}: {' '.join(Path(c).name if c == sys.executable else c for c in cmd[1:])}")
        t0 = time.monotonic()
        rc = subprocess.run(cmd, cwd=ROOT).returncode
        took = time.monotonic() - t0
        outcomes.append((name, rc, took))
        say(f"[{i}/{len(chosen)}] {name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {took / 60:.1f} min "
            f"(all so far {(time.monotonic() - started) / 60:.1f} min)")
    say("summary: " + "; ".join(f"{n} {'ok' if rc == 0 else 'FAILED'} {t / 60:.1f} min" for n, rc, t in outcomes))
    if not args.no_write:
        say("results: docs/performance.md")
    return 0 if all(rc == 0 for _, rc, _ in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
