"""Long recordings (issue 14): whisperd's whole-file path vs its window path vs the peers, one run.

On real speech with human transcripts (bench/real_long.py: the long real recording, 181 s, and
jfk.wav ×8, 88 s; --quick: 89 s of read speech and jfk ×4), tiny.en, on this machine's cores:

    whisperd before windows the daemon of the last commit before issue 14 (`--before-commit`), run from
                            a detached worktree behind this checkout's shim: "today's path", the goals' base
    whisperd, whole file    this commit's one-job path (`--window-mode whole`: the new temperature
                            fallback, no windows), through HTTP (shim)
    whisperd, windows       `--window-mode windows`, through HTTP (only if the daemon has the setting)
    faster-whisper batched  faster_whisper.BatchedInferencePipeline in a process of its own, in-process
                            calls (no server), the same bundled CTranslate2 weights, int8, beam 5
    whisper.cpp server      `whisper-server` (bench/peers/build_whisper_cpp.sh), ggml tiny.en converted
                            from the same weights, beam 5, all cores, through HTTP

Every HTTP system gets the same aiohttp client and the same multipart POST to
/v1/audio/transcriptions (whisper.cpp's server is started with that as its inference path).
Per request: wall time, WER against the human transcript (bench/wer.py's normalizer), and the
peak RSS of the server: the sum over the daemon's process tree (hot worker, fork server, cold
workers) or whisper-server, sampled from /proc every 0.1 s while the request runs; for the
in-process pipeline, its process's VmHWM. Rounds are interleaved - every round runs every
recording on every system, in a rotating order - so swings of machine speed hit all alike;
the table shows the median wall time and the last round's words.

    .venv/bin/python bench/long_audio.py [--quick] [--rounds N] [--no-write]
        [--whisper-cpp PATH/whisper-server] [--systems whole,windows,batched,whisper.cpp]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402

from bench.real_long import Recording, recordings  # noqa: E402
from bench.report import ROOT, git_rev, machine, median, progress, table, update_section  # noqa: E402
from bench.wer import word_errors  # noqa: E402
from testing.stack import CACHE, Stack, free_port  # noqa: E402
from tests.stack.reliability.probes import PeakMemory  # noqa: E402

WHISPER_CPP = Path(os.environ.get("WHISPER_CPP_PREFIX", "/var/cache/whisperd-bench/whisper.cpp"))
SYSTEMS = ("before", "whole", "windows", "batched", "whisper.cpp")
# The last commit before issue 14's work: the daemon as it was ("today's path" of the issue).
BEFORE_COMMIT = "4147cfa"
LABEL = {"before": f"whisperd before windows ({BEFORE_COMMIT})", "whole": "whisperd, whole file",
         "windows": "whisperd, windows",
         "batched": "faster-whisper batched (in-process)", "whisper.cpp": "whisper.cpp server"}
BEAM = 5
BATCH_SIZE = 8
# Goals of issue 14 (2 cores, tiny.en), against whisperd's whole-file path.
GOAL_REAL_WALL, GOAL_REAL_WER_POINTS, GOAL_REPEAT_WALL = 0.5, 0.5, 0.25


# --- the systems --------------------------------------------------------------------------------


def daemon_has_window_mode() -> bool:
    out = subprocess.run([sys.executable, "-m", "whisperd", "--help"], capture_output=True, text=True, cwd=ROOT)
    return "--window-mode" in out.stdout


class HttpSystem:
    def __init__(self, name: str, url: str, server_pid: int, stop) -> None:
        self.name, self.url, self.server_pid, self._stop = name, url, server_pid, stop

    async def transcribe(self, session: aiohttp.ClientSession, rec: Recording) -> tuple[float, str, float]:
        form = aiohttp.FormData()
        form.add_field("model", "whisper-1")
        form.add_field("response_format", "json")
        form.add_field("file", rec.path.read_bytes(), filename=rec.path.name, content_type="audio/wav")
        with PeakMemory(self.server_pid, tree=True, interval=0.1) as mem:
            t0 = time.perf_counter()
            async with session.post(self.url + "/v1/audio/transcriptions", data=form) as r:
                body = await r.read()
                took = time.perf_counter() - t0
        if r.status != 200:
            raise RuntimeError(f"{self.name}: HTTP {r.status}: {body[:300]!r}")
        return took, json.loads(body)["text"], mem.peak

    def stop(self) -> None:
        self._stop()


def start_whisperd(mode: str, window_mode: bool) -> HttpSystem:
    args = ["--model", "tiny.en", "--engine", "faster-whisper"]
    if window_mode:
        args += ["--window-mode", mode]
    stack = Stack(*args)
    return HttpSystem(mode, stack.url, stack.daemon.proc.pid, stack.stop)


def start_before(commit: str) -> HttpSystem:
    """The daemon of `commit` (a detached worktree under /tmp), behind this checkout's shim:
    protocol v1 is the same on both sides."""
    from testing.stack import Daemon, Shim

    tree = Path(f"/tmp/whisperd-before-{commit}")
    if not tree.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit], cwd=ROOT, check=True,
                       capture_output=True)
    daemon = Daemon("--model", "tiny.en", "--engine", "faster-whisper", source=tree)
    shim = Shim(daemon.socket)

    def stop() -> None:
        shim.stop()
        daemon.stop()

    return HttpSystem("before", shim.url, daemon.proc.pid, stop)


def start_whisper_cpp(server: Path, model: Path) -> HttpSystem:
    port = free_port()
    log = open(f"/tmp/whisper-cpp-{port}.log", "wb")
    proc = subprocess.Popen([str(server), "-m", str(model), "-t", str(os.cpu_count() or 1), "-bs", str(BEAM),
                             "--host", "127.0.0.1", "--port", str(port),
                             "--inference-path", "/v1/audio/transcriptions"],
                            stdout=log, stderr=subprocess.STDOUT)
    import socket

    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"whisper-server exited with {proc.returncode}: see {log.name}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError("whisper-server not listening after 60 s")
            time.sleep(0.1)

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        os.unlink(log.name)

    return HttpSystem("whisper.cpp", f"http://127.0.0.1:{port}", proc.pid, stop)


def batched_one(path: str) -> dict:
    """In this process: load, warm up on jfk.wav, transcribe `path` once with the batched pipeline."""
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    from bench.real_long import load
    from whisperd.daemon.models import resolve_model

    model = WhisperModel(str(resolve_model("tiny.en", CACHE).path), device="cpu", compute_type="int8",
                         cpu_threads=os.cpu_count() or 1, local_files_only=True)
    pipeline = BatchedInferencePipeline(model)

    def run(pcm) -> str:
        segments, _ = pipeline.transcribe(pcm, language="en", beam_size=BEAM, batch_size=BATCH_SIZE)
        return " ".join(s.text.strip() for s in segments)

    run(load(ROOT / "tests" / "fixtures" / "jfk.wav"))
    pcm = load(Path(path))
    t0 = time.perf_counter()
    text = run(pcm)
    took = time.perf_counter() - t0
    hwm = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return {"seconds": took, "text": text, "peak_rss_mib": hwm / 1024}


def run_batched(rec: Recording) -> tuple[float, str, float]:
    out = subprocess.run([sys.executable, __file__, "--batched-one", str(rec.path)], capture_output=True,
                         text=True, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"batched pipeline failed: {out.stderr[-2000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return r["seconds"], r["text"], r["peak_rss_mib"]


# --- the run ---------------------------------------------------------------------------------------


async def measure(systems: dict[str, HttpSystem | None], recs: list[Recording], rounds: int) -> dict:
    """(system, recording) → {"seconds": [...], "text": last, "rss": [...]}, rounds interleaved."""
    results: dict[tuple[str, str], dict] = {}
    names = list(systems)
    warm = Recording("jfk", ROOT / "tests" / "fixtures" / "jfk.wav", "", "warm-up")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3600)) as session:
        for name, system in systems.items():  # warm-up: first-request costs stay out of the figures
            if system is not None:
                await system.transcribe(session, warm)
        for rnd in range(rounds):
            for ri, rec in enumerate(recs):
                k = (rnd * len(recs) + ri) % len(names)
                for name in names[k:] + names[:k]:  # a rotating order: no system always goes first
                    system = systems[name]
                    if system is None:
                        took, text, rss = await asyncio.to_thread(run_batched, rec)
                    else:
                        took, text, rss = await system.transcribe(session, rec)
                    r = results.setdefault((name, rec.name), {"seconds": [], "rss": []})
                    r["seconds"].append(took)
                    r["rss"].append(rss)
                    r["text"] = text
                    errors, words = word_errors(rec.text, text)
                    progress(f"round {rnd + 1}/{rounds} {rec.name} {LABEL[name]}: {took:.1f} s, "
                             f"WER {100 * errors / words:.1f} %, peak {rss:.0f} MiB")
    return results


def _wer(reference: str, hypothesis: str) -> float:
    errors, words = word_errors(reference, hypothesis)
    return errors / words


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="less audio (89 s read speech, jfk ×4), one round")
    ap.add_argument("--rounds", type=int, default=None, help="rounds (default 3; 1 with --quick)")
    ap.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset of: " + ", ".join(SYSTEMS))
    ap.add_argument("--whisper-cpp", type=Path, default=WHISPER_CPP / "build" / "bin" / "whisper-server")
    ap.add_argument("--whisper-cpp-model", type=Path, default=WHISPER_CPP / "models" / "ggml-tiny.en.bin")
    ap.add_argument("--before-commit", default=BEFORE_COMMIT,
                    help="the commit whose daemon is 'before windows' (default: the last before issue 14)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/performance.md")
    ap.add_argument("--batched-one", metavar="WAV", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.batched_one:
        print(json.dumps(batched_one(args.batched_one)))
        return 0
    rounds = args.rounds or (1 if args.quick else 3)
    chosen = [s.strip() for s in args.systems.split(",") if s.strip()]
    recs = recordings(args.quick)
    notes = []
    window_mode = daemon_has_window_mode()
    if not window_mode:
        notes.append("The daemon has no `--window-mode` yet: 'whisperd, whole file' is the daemon as it is "
                     "(its only path), and there is no 'windows' row.")
        chosen = [s for s in chosen if s != "windows"]
    if "whisper.cpp" in chosen and not (args.whisper_cpp.exists() and args.whisper_cpp_model.exists()):
        notes.append(f"whisper.cpp's server is not built ({args.whisper_cpp}): run "
                     "`bash bench/peers/build_whisper_cpp.sh` for its rows.")
        chosen = [s for s in chosen if s != "whisper.cpp"]
    print(f"machine: {machine()}")
    print("recordings: " + "; ".join(f"{r.name} {r.seconds:.0f} s" for r in recs))

    systems: dict[str, HttpSystem | None] = {}
    try:
        for name in chosen:
            progress(f"starting {LABEL[name]}")
            if name in ("whole", "windows"):
                systems[name] = start_whisperd(name, window_mode)
            elif name == "before":
                systems[name] = start_before(args.before_commit)
            elif name == "whisper.cpp":
                systems[name] = start_whisper_cpp(args.whisper_cpp, args.whisper_cpp_model)
            else:
                systems[name] = None  # in-process, a fresh process per measurement
        started = time.monotonic()
        results = asyncio.run(measure(systems, recs, rounds))
        took = time.monotonic() - started
    finally:
        for system in systems.values():
            if system is not None:
                system.stop()

    rows, verdicts = [], []
    # The goals are against "today's path": the daemon before windows, when it ran.
    base_name = "before" if "before" in chosen else "whole"
    for rec in recs:
        base = results.get((base_name, rec.name))
        base_s = median(base["seconds"]) if base else float("nan")
        base_wer = 100 * _wer(rec.text, base["text"]) if base else float("nan")
        for name in chosen:
            r = results[(name, rec.name)]
            errors, words = word_errors(rec.text, r["text"])
            secs = median(r["seconds"])
            rows.append([rec.name, f"{rec.seconds:.0f}", LABEL[name], secs,
                         " / ".join(f"{s:.1f}" for s in r["seconds"]), f"{secs / base_s:.2f}×",
                         100 * errors / words, f"{errors}/{words}", round(max(r["rss"]))])
        win = results.get(("windows", rec.name))
        if win is None or base is None:
            continue
        ratio, wer_w = median(win["seconds"]) / base_s, 100 * _wer(rec.text, win["text"])
        whole = results.get(("whole", rec.name))
        also = (f" (and {median(win['seconds']) / median(whole['seconds']):.2f}× this commit's whole-file path)"
                if whole is not None and base_name != "whole" else "")
        against = LABEL[base_name]
        if rec.name.startswith("jfk_x"):
            met = ratio <= GOAL_REPEAT_WALL
            verdicts.append(f"- repetitive ({rec.name}): windows take {ratio:.2f}× the wall time of {against}{also}; "
                            f"goal ≤ {GOAL_REPEAT_WALL}×: **{'met' if met else 'not met'}**.")
        else:
            met = ratio <= GOAL_REAL_WALL and wer_w <= base_wer + GOAL_REAL_WER_POINTS
            verdicts.append(f"- long real recording ({rec.name}): windows take {ratio:.2f}× the wall time of "
                            f"{against}{also}, WER {wer_w:.1f} % vs {base_wer:.1f} %; goal ≤ {GOAL_REAL_WALL}× with "
                            f"WER ≤ +{GOAL_REAL_WER_POINTS} points: **{'met' if met else 'not met'}**.")
    if not verdicts:
        verdicts.append("- goals: not judged (no 'windows' row).")
    headers = ["recording", "audio s", "system", "wall s (median)", "each round s", f"× {base_name}",
               "WER %", "errors/words", "peak RSS MiB"]
    result_table = table(headers, rows)
    print(result_table)
    for line in verdicts + [f"- {n}" for n in notes]:
        print(line)
    print(f"took {took:.0f} s")

    texts = "\n".join(f"- {rec}, {LABEL[name]}: “{r['text'][:600]}{'…' if len(r['text']) > 600 else ''}”"
                      for (name, rec), r in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])))
    body = f"""## Long recordings: windows vs the whole file vs the peers (bench/long_audio.py, issue 14)

`bench/long_audio.py{' --quick' if args.quick else ''}` (commit {git_rev()}), {rounds} round(s), interleaved.
Machine: {machine()}.

tiny.en, beam 5, every system on all cores. Recordings (`bench/real_long.py`, sources in
`tests/fixtures/SOURCES.md`): {'; '.join(f'`{r.name}` {r.seconds:.0f} s ({r.what})' for r in recs)};
WER against the human transcripts after `bench/wer.py`'s normalizer. whisperd and whisper.cpp's
server (1.8.5, built by `bench/peers/build_whisper_cpp.sh`, ggml tiny.en converted from the same
weights) answer the same aiohttp multipart POST to `/v1/audio/transcriptions`; faster-whisper's
`BatchedInferencePipeline` (batch {BATCH_SIZE}, its own Silero VAD cuts) runs in-process, in a fresh
process per measurement, timed after load and a warm-up. Peak RSS: the server's process tree
(whisperd: the daemon, its fork server and cold workers, summed, sampled every 0.1 s during the
request; not the shim) or the pipeline process's VmHWM (load included).

{result_table}

Goals (issue 14), against today's path (the daemon before windows, commit {args.before_commit}, when it ran;
else this commit's whole-file path, which has the new temperature fallback):

{chr(10).join(verdicts + [f'- {n}' for n in notes])}

<details><summary>the transcripts (last round)</summary>

{texts}

</details>
"""
    if not args.no_write:
        update_section("long_audio", body)
        print("written to docs/performance.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
