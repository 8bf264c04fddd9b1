"""What the server itself costs: end-to-end overhead, and the framework's ceiling.

(a) Overhead: the same clip through HTTP → shim → socket → daemon (faster-whisper,
    the default compute type, cold workers off so every request runs on the hot
    lane like the in-process call) against decode + `Engine.transcribe()` in this
    process, interleaved in one run; the socket alone (whisperctl's path) is timed
    too, so the added time splits into shim and daemon. Goals: ≤ 15 ms on the
    3.8 s clip, ≤ 3 % on the 32 s clip.
(b) Ceiling: shim + daemon with the no-op engine (`--engine null`), 0.5 s WAV
    uploads, a closed loop at concurrency 1/16/64: requests/s, p50/p99, and the
    CPU seconds each process spent per request. Goal: ≥ 1,000 req/s and
    p99 ≤ 50 ms at 64. The load generator is wrk (C, one thread) when installed,
    else an aiohttp client in this process; client and server share the cores.
(c) Profile: py-spy samples the shim and the daemon under the concurrency-64
    load; the top functions (self and inclusive) show what dominates.

    .venv/bin/python bench/overhead.py [--quick] [--loadgen auto|wrk|aiohttp] [--no-profile] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import (  # noqa: E402
    ROOT,
    git_rev,
    machine,
    median,
    percentile,
    progress,
    table,
    update_section,
)
from bench.speech import wav_bytes  # noqa: E402
from testing.stack import CACHE, Stack  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
CLIPS = (("3 s", "fox.wav"), ("30 s", "long.mp3"))
CONCURRENCY = (1, 16, 64)
PLOT = ROOT / "docs" / "perf-ceiling.png"


# --- HTTP without a client library in the way ----------------------------------------------------


def multipart(audio: bytes, filename: str) -> tuple[bytes, str]:
    """OpenAI's upload shape, built once: (body, content type)."""
    boundary = uuid.uuid4().hex
    parts = [
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n".encode(),
        (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
         "Content-Type: application/octet-stream\r\n\r\n").encode() + audio + b"\r\n",
        f"--{boundary}--\r\n".encode(),
    ]
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _closed_by_peer(sock) -> bool:
    import select
    return bool(select.select([sock], [], [], 0)[0])  # readable while idle: EOF (or a reset)


class HTTP:
    """One keep-alive connection, stdlib only, so the client adds as little as it can."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=600)

    def post(self, body: bytes, ctype: str) -> bytes:
        if self.conn.sock is not None and _closed_by_peer(self.conn.sock):
            # The shim closes a connection idle past keepalive_timeout (10 s): reconnect, as
            # pooling clients (httpx, aiohttp, urllib3) do, instead of writing into a closed one.
            self.conn.close()
        self.conn.request("POST", "/v1/audio/transcriptions", body, {"Content-Type": ctype})
        r = self.conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status}: {data[:300]!r}")
        return data

    def close(self) -> None:
        self.conn.close()


# --- (a) server overhead -------------------------------------------------------------------------


def timed_paths(paths: dict, runs: int, what: str) -> dict[str, list[float]]:
    """Run every path once (warm-up), then `runs` rounds, the paths interleaved so drift in
    the machine's load hits them alike."""
    for f in paths.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in paths}
    for i in range(runs):
        for k, f in paths.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
        if runs <= 10 or (i + 1) % 10 == 0:
            progress(f"{what}: round {i + 1}/{runs}: "
                     + ", ".join(f"{k} {v[-1] * 1000:.0f} ms" for k, v in times.items()))
    return times


def server_overhead(runs: dict[str, int], null_runs: int) -> tuple[list[list], list[list]]:
    """Two measurements of the same thing.

    Direct (what a user sees): the real engine through HTTP and through the socket against
    decode + engine in this process. The engine's own run-to-run spread on a shared machine is
    larger than the goals, so this difference is noisy.

    Decomposed (low noise): the same uploads to a stack with the no-op engine cost everything but
    the model - HTTP, multipart, socket, framing, decode, scheduling, JSON - so its time minus
    the in-process decode is the framework's share, and that over the direct in-process time
    is the ratio.
    """
    from bench.engines import daemon_options
    from whisperd.client import Client
    from whisperd.daemon.audio import decode_audio
    from whisperd.daemon.models import resolve_model
    from whisperd.engines import load_engine

    options = daemon_options()
    clips = {label: (FIXTURES / name).read_bytes() for label, name in CLIPS}
    forms = {label: multipart(audio, name) for (label, name), audio in zip(CLIPS, clips.values())}
    progress("overhead: loading the in-process engine (faster-whisper, compute type auto)")
    engine = load_engine("faster-whisper", resolve_model("tiny.en", CACHE), device="auto", compute_type="auto",
                         cache_dir=str(CACHE))
    direct, texts = {}, {}
    progress("overhead: starting daemon (faster-whisper, --max-cold-workers 0, --hot-slots 1) + shim")
    # One slot: the request then runs on every core, like the in-process call, so the
    # difference is the server's cost and not a different split of the threads.
    stack = Stack("--engine", "faster-whisper", "--max-cold-workers", "0", "--hot-slots", "1")
    try:
        web, sock = HTTP(stack.url), Client(stack.daemon.socket, timeout=600)
        for label, audio in clips.items():
            body, ctype = forms[label]
            paths = {
                # What the daemon does per request: decode, then the engine with its default options.
                "in-process": lambda: engine.transcribe(decode_audio(audio), options).text,
                "socket": lambda: sock.transcribe(audio).text,
                "HTTP": lambda: json.loads(web.post(body, ctype))["text"],
            }
            texts[label] = {k: f() for k, f in paths.items()}
            direct[label] = timed_paths(paths, runs[label], f"overhead {label}, real engine")
        web.close()
        sock.close()
    finally:
        stack.stop()
    engine = None  # free the model before the next stack starts

    null = {}
    progress("overhead: starting daemon (--engine null, --max-cold-workers 0) + shim")
    stack = Stack("--engine", "null", "--max-cold-workers", "0")
    try:
        web, sock = HTTP(stack.url), Client(stack.daemon.socket, timeout=600)
        for label, audio in clips.items():
            body, ctype = forms[label]
            null[label] = timed_paths({
                "decode": lambda: decode_audio(audio),
                "socket": lambda: sock.transcribe(audio),
                "HTTP": lambda: web.post(body, ctype),
            }, null_runs, f"overhead {label}, no-op engine")
        web.close()
        sock.close()
    finally:
        stack.stop()

    direct_rows, null_rows = [], []
    for label in clips:
        d, n = direct[label], null[label]
        base = median(d["in-process"])
        s, h = median(d["socket"]), median(d["HTTP"])
        spread = (max(d["in-process"]) - min(d["in-process"])) / base * 100
        direct_rows.append([label, runs[label], base * 1000, f"± {spread / 2:.0f} %", s * 1000, h * 1000,
                            (s - base) * 1000, (h - base) * 1000, f"{100 * (h / base - 1):+.1f} %",
                            "yes" if len(set(texts[label].values())) == 1 else "NO"])
        dec, ns, nh = median(n["decode"]), median(n["socket"]), median(n["HTTP"])
        null_rows.append([label, null_runs, dec * 1000, ns * 1000, nh * 1000, (ns - dec) * 1000, (nh - dec) * 1000,
                          f"{100 * (nh - dec) / base:.2f} %"])
    return direct_rows, null_rows


# --- (b) the ceiling, with a no-op engine ---------------------------------------------------------


def small_upload() -> bytes:
    """The first 0.5 s of the fox recording: real speech, 16 kHz mono 16-bit WAV (16 KB)."""
    from whisperd.daemon.audio import decode_audio

    return wav_bytes(decode_audio((FIXTURES / "fox.wav").read_bytes())[:8000])


WRK_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = %(ctype)s
local f = assert(io.open(%(body)s, "rb"))
wrk.body = f:read("*all")
f:close()

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, "max_us": %%d, ' ..
    '"errors": %%d, "non_2xx": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_wrk(url: str, lua: str, concurrency: int, seconds: float) -> dict:
    cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", lua,
           url + "/v1/audio/transcriptions"]
    before = children_cpu_s()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("{"))
    r = json.loads(line)
    return {"requests": r["requests"], "seconds": r["duration_us"] / 1e6, "p50": r["p50_us"] / 1e6,
            "p99": r["p99_us"] / 1e6, "errors": r["errors"] + r["non_2xx"], "client_cpu_s": children_cpu_s() - before}


async def _aiohttp_load(url: str, body: bytes, ctype: str, concurrency: int, seconds: float) -> dict:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Content-Type": ctype}
    target = url + "/v1/audio/transcriptions"
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = time.perf_counter() + seconds

        async def loop() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                try:
                    async with session.post(target, data=body, headers=headers) as r:
                        await r.read()
                        if r.status != 200:
                            errors += 1
                except aiohttp.ClientError:
                    errors += 1
                latencies.append(time.perf_counter() - t)

        t0, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*[loop() for _ in range(concurrency)])
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"requests": len(latencies), "seconds": wall, "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99), "errors": errors, "client_cpu_s": cpu}


def load(loadgen: str, url: str, lua: str, body: bytes, ctype: str, concurrency: int, seconds: float) -> dict:
    if loadgen == "wrk":
        return run_wrk(url, lua, concurrency, seconds)
    try:
        import uvloop

        return uvloop.run(_aiohttp_load(url, body, ctype, concurrency, seconds))
    except ImportError:
        return asyncio.run(_aiohttp_load(url, body, ctype, concurrency, seconds))


def ceiling(loadgen: str, seconds: float, profile_s: float) -> tuple[list[list], dict, dict | None]:
    wav = small_upload()
    body, ctype = multipart(wav, "short.wav")
    tmp = Path(tempfile.mkdtemp(prefix="wd-bench-"))
    (tmp / "body").write_bytes(body)
    lua = tmp / "post.lua"
    # JSON string literals are Lua string literals for these ASCII values.
    lua.write_text(WRK_LUA % {"ctype": json.dumps(ctype), "body": json.dumps(str(tmp / "body"))})
    progress("ceiling: starting daemon (--engine null, --max-cold-workers 0) + shim")
    stack = Stack("--engine", "null", "--max-cold-workers", "0")
    pids = {"shim": stack.shim.proc.pid, "daemon": stack.daemon.proc.pid}
    rows, results, profile = [], {}, None
    try:
        HTTP(stack.url).post(body, ctype)  # the path works before it is loaded
        for c in CONCURRENCY:
            load(loadgen, stack.url, str(lua), body, ctype, c, 1.0)  # warm-up: connections, caches
            before = {k: proc_cpu_s(p) for k, p in pids.items()}
            r = load(loadgen, stack.url, str(lua), body, ctype, c, seconds)
            cpu = {k: proc_cpu_s(p) - before[k] for k, p in pids.items()}
            n = max(r["requests"], 1)
            rps = r["requests"] / r["seconds"]
            results[c] = {**r, "rps": rps, "cpu": cpu}
            busy = (cpu["shim"] + cpu["daemon"] + r["client_cpu_s"]) / r["seconds"] / (os.cpu_count() or 1)
            rows.append([c, r["requests"], rps, r["p50"] * 1000, r["p99"] * 1000, r["errors"],
                         cpu["shim"] / n * 1e6, cpu["daemon"] / n * 1e6, r["client_cpu_s"] / n * 1e6,
                         f"{100 * busy:.0f} %"])
            progress(f"ceiling c={c}: {rps:.0f} req/s, p50 {r['p50'] * 1000:.1f} ms, p99 {r['p99'] * 1000:.1f} ms, "
                     f"{r['errors']} errors")
        if profile_s > 0:
            profile = profile_stack(loadgen, stack, pids, str(lua), body, ctype, profile_s)
    finally:
        stack.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return rows, results, profile


# --- (c) where the time goes ---------------------------------------------------------------------


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def spy_record(spy: str, pid: int, out: Path, seconds: float) -> str | None:
    """py-spy record into `out` (collapsed stacks); None on success, else why not.

    py-spy sometimes fails to read the interpreter's version from a busy process on
    its first try; it fails fast then, so a failure within two seconds is retried.
    """
    err = ""
    for _ in range(4):
        t0 = time.monotonic()
        p = subprocess.run([spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "100",
                            "--gil", "--format", "raw", "--output", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=seconds + 60)
        if p.returncode == 0 and out.exists():
            return None
        err = (p.stderr.strip().splitlines() or ["?"])[0]
        if time.monotonic() - t0 > 2:
            break
        time.sleep(0.2)
    return err


def profile_stack(loadgen: str, stack: Stack, pids: dict[str, int], lua: str, body: bytes, ctype: str,
                  seconds: float) -> dict | None:
    import threading

    spy = py_spy()
    if spy is None:
        progress("profile: py-spy is not installed (pip install -r requirements/bench.txt); skipped")
        return None
    out_dir = Path(tempfile.mkdtemp(prefix="wd-prof-"))
    progress(f"profile: py-spy on shim and daemon for {seconds:.0f} s under concurrency 64 (raw stacks in {out_dir})")
    # The load runs in a thread for longer than the sampling, which starts once it is under way.
    loader = threading.Thread(target=load, args=(loadgen, stack.url, lua, body, ctype, 64, seconds + 4))
    loader.start()
    time.sleep(1.0)
    failed: dict[str, str | None] = {}
    spies = [threading.Thread(target=lambda n=name, p=pid: failed.__setitem__(
        n, spy_record(spy, p, out_dir / f"{n}.txt", seconds))) for name, pid in pids.items()]
    for t in spies:
        t.start()
    for t in spies:
        t.join()
    loader.join()
    failed = {k: v for k, v in failed.items() if v}
    if failed:
        progress(f"profile: py-spy failed: {failed}")
    result = {"dir": str(out_dir)}
    for name in pids:
        path = out_dir / f"{name}.txt"
        if path.exists():
            result[name] = summarize(path.read_text())
    return result


# Frames every sample of a thread passes through: they explain nothing about where the time goes.
_ROOT_FRAMES = ("_run_module_as_main", "_run_code", "<module>", "main", "run_app", "run", "run_until_complete",
                "run_forever", "_run_once", "_bootstrap", "_bootstrap_inner", "_worker", "serve")

# What each sample is spent on: the frame nearest the leaf that matches a rule names it.
# (category, substrings of a raw frame `name (path:line)`); the first matching rule wins.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("multipart form parsing (aiohttp)", ("aiohttp/multipart.py", "read_form (", "_read_limited (")),
    ("JSON encode/decode, result dicts", ("json/", "asdict (", "_asdict_inner (", "to_dict (", "from_dict (")),
    ("Prometheus metrics", ("prometheus_client/",)),
    ("logging", ("logging/__init__.py",)),
    ("systemd STATUS= line (on_change)", ("status_line (", "Server.daemon_status (", "Pool.status (", "whisperd/daemon/systemd.py")),
    ("scheduling (pool + policy)", ("Pool._schedule (", "whisperd/daemon/policy.py", "mem_available_mb (",
                                    "_memory_estimate (", "_worker_facts (")),
    ("thread hand-off (executors)", ("concurrent/futures/thread.py", "run_in_executor (", "call_soon_threadsafe (",
                                     "_chain_future", "_copy_future_state (")),
    ("audio decode", ("whisperd/daemon/audio.py",)),
    ("socket framing (protocol + client)", ("whisperd/core/protocol.py", "whisperd/client/__init__.py")),
    ("daemon request handling (server.py, hot.py, pool.py)", ("whisperd/daemon/server.py", "whisperd/daemon/lanes/hot.py",
                                                              "whisperd/daemon/pool.py")),
    ("HTTP server (aiohttp)", ("aiohttp/",)),
    ("shim handlers", ("shim/",)),
    ("asyncio streams/tasks", ("asyncio/",)),
    ("event loop and I/O in C (uvloop: epoll, socket reads/writes)", ("Runner.run (", "run_app (")),
)


def category(frames: list[str]) -> str:
    for frame in reversed(frames):  # leaf first
        for name, needles in CATEGORIES:
            if any(n in frame for n in needles):
                return name
    return "other"


def _function(frame: str) -> str:
    """`name (path/to/file.py:123)` → `name (dir/file.py)`; line numbers would split one function."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{name} ({short})"


def summarize(raw: str, top: int = 12) -> dict:
    """Collapsed stacks (`frame;frame;... count`, root first) → categories, top self and
    inclusive functions, in % of samples."""
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        raw_frames = [f for f in stack.split(";") if f]
        frames = [_function(f) for f in raw_frames]
        if not frames:
            continue
        total += n
        self_counts[frames[-1]] += n
        categories[category(raw_frames)] += n
        for f in set(frames):
            if f.split(" (")[0] not in _ROOT_FRAMES:
                incl_counts[f] += n
        threads["worker threads" if any("_bootstrap (threading.py" in f for f in raw_frames) else "event loop"] += n
    pct = (lambda c: [(f, 100 * n / total) for f, n in c.most_common(top)]) if total else (lambda c: [])
    return {"samples": total, "self": pct(self_counts), "inclusive": pct(incl_counts),
            "categories": pct(categories) if total else [],
            "threads": {k: 100 * v / total for k, v in threads.items()} if total else {}}


# --- report --------------------------------------------------------------------------------------


def plot_ceiling(results: dict, path: Path, loadgen: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        progress("matplotlib is not installed: no plot (pip install -r requirements/bench.txt)")
        return False
    cs = sorted(results)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.bar([str(c) for c in cs], [results[c]["rps"] for c in cs], color="tab:blue")
    a.axhline(1000, color="tab:red", ls="--", lw=1, label="goal 1,000 req/s")
    a.set_xlabel("concurrent clients")
    a.set_ylabel("requests / s")
    a.legend(fontsize=8)
    b.plot([str(c) for c in cs], [results[c]["p50"] * 1000 for c in cs], "o-", label="p50")
    b.plot([str(c) for c in cs], [results[c]["p99"] * 1000 for c in cs], "s-", label="p99")
    b.axhline(50, color="tab:red", ls="--", lw=1, label="goal p99 50 ms at 64")
    b.set_xlabel("concurrent clients")
    b.set_ylabel("latency ms")
    b.legend(fontsize=8)
    fig.suptitle(f"Framework ceiling: HTTP → shim → socket → daemon, no-op engine, 0.5 s WAV ({loadgen}, "
                 f"{os.cpu_count()} cores shared with the client)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def profile_tables(profile: dict) -> str:
    out = []
    cats: dict[str, dict[str, float]] = {}
    for name in ("shim", "daemon"):
        for c, p in (profile.get(name) or {}).get("categories", []):
            cats.setdefault(c, {})[name] = p
    if cats:
        rows = [[c, f"{v.get('shim', 0):.1f}", f"{v.get('daemon', 0):.1f}"]
                for c, v in sorted(cats.items(), key=lambda kv: -max(kv[1].values()))]
        out.append("What the samples were spent on (each sample goes to the first category found from the leaf "
                   "up; % of that process's samples):\n\n" + table(["category", "shim %", "daemon %"], rows) + "\n")
    for name in ("shim", "daemon"):
        s = profile.get(name)
        if not s or not s["samples"]:
            continue
        split = ", ".join(f"{k} {v:.0f} %" for k, v in sorted(s["threads"].items()))
        out.append(f"**{name}**: {s['samples']} samples of the thread holding the GIL ({split}).\n")
        rows = [[i + 1, f"`{f}`", f"{p:.1f}"] for i, (f, p) in enumerate(s["self"])]
        out.append("Self time (where the interpreter was):\n\n" + table(["#", "function", "% of samples"], rows) + "\n")
        rows = [[i + 1, f"`{f}`", f"{p:.1f}"] for i, (f, p) in enumerate(s["inclusive"])]
        out.append("Inclusive (the function or what it called):\n\n"
                   + table(["#", "function", "% of samples"], rows) + "\n")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer runs, shorter load phases")
    parser.add_argument("--loadgen", default="auto", choices=("auto", "wrk", "aiohttp"))
    parser.add_argument("--seconds", type=float, default=None, help="seconds per concurrency level (default 5)")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--skip-overhead", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/performance.md")
    args = parser.parse_args()
    loadgen = args.loadgen if args.loadgen != "auto" else ("wrk" if shutil.which("wrk") else "aiohttp")
    if loadgen == "wrk" and shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install wrk)")
    runs = {"3 s": 3, "30 s": 2} if args.quick else {"3 s": 9, "30 s": 5}
    seconds = args.seconds or (2.0 if args.quick else 5.0)
    profile_s = 0.0 if args.no_profile else (5.0 if args.quick else 10.0)
    print(f"machine: {machine()}")
    started = time.monotonic()

    over_table = null_table = ""
    if not args.skip_overhead:
        direct_rows, null_rows = server_overhead(runs, 10 if args.quick else 30)
        over_table = table(["clip", "runs", "in-process ms (decode + engine)", "in-process spread", "socket ms",
                            "HTTP ms", "socket adds ms", "HTTP adds ms", "HTTP ratio", "same text"], direct_rows)
        null_table = table(["clip", "runs", "decode ms (in-process)", "socket ms (no-op engine)",
                            "HTTP ms (no-op engine)", "socket adds ms", "HTTP adds ms",
                            "HTTP adds, % of in-process decode + engine"], null_rows)
        print(over_table)
        print(null_table)

    rows, results, profile = ceiling(loadgen, seconds, profile_s)
    ceiling_table = table(["concurrency", "requests", "req/s", "p50 ms", "p99 ms", "errors",
                           "shim CPU µs/req", "daemon CPU µs/req", "client CPU µs/req", "CPU busy (all cores)"],
                          rows)
    print(ceiling_table)
    prof_md = profile_tables(profile) if profile else "(not profiled)"
    if profile:
        print(prof_md)
        print(f"raw py-spy stacks: {profile['dir']}")
    print(f"took {time.monotonic() - started:.0f} s")
    wrote_plot = plot_ceiling(results, PLOT, loadgen)

    c64 = results.get(64)
    goal = ""
    if c64:
        met = c64["rps"] >= 1000 and c64["p99"] <= 0.050
        goal = (f"At 64: {c64['rps']:.0f} req/s, p99 {c64['p99'] * 1000:.0f} ms — goal ≥ 1,000 req/s and "
                f"p99 ≤ 50 ms: **{'met' if met else 'not met'}**.")
        n64 = max(c64["requests"], 1)
        cpu_us = (c64["cpu"]["shim"] + c64["cpu"]["daemon"] + c64["client_cpu_s"]) / n64 * 1e6
        goal += (f" With 64 requests always in flight the mean latency is 64 ÷ throughput (Little's law), "
                 f"{64 / c64['rps'] * 1000:.0f} ms here; p99 ≤ 50 ms needs ≥ 1,280 req/s with almost no spread. "
                 f"Client, shim and daemon together spent {cpu_us:.0f} CPU µs per request, which caps "
                 f"{os.cpu_count()} cores at {(os.cpu_count() or 1) * 1e6 / cpu_us:.0f} req/s.")
    client = ("wrk 4.1 (C, one thread, closed loop: each connection sends its next request when the last is "
              "answered), Lua script posting a prebuilt multipart body" if loadgen == "wrk" else
              "an aiohttp client in the bench process (one shared connector, a prebuilt multipart body); it "
              "competes with the server for the same cores, so these figures are a floor")
    body = f"""## Server overhead and the framework's ceiling

`bench/overhead.py{' --quick' if args.quick else ''}` (commit {git_rev()}). Machine: {machine()}.

### Overhead: HTTP → shim → socket → daemon against an in-process call

tiny.en, faster-whisper, compute type auto, beam 5, daemon with `--max-cold-workers 0 --hot-slots 1` (every
request on the hot worker with all its threads, like the in-process call; the default two 1-thread slots
trade a long file's speed for bursts, see the section "slots"); medians, the three paths interleaved in one run. "In-process" is
`decode_audio()` + `Engine.transcribe()` here; "socket" is `whisperd.client.Client` to the daemon; "HTTP" is
a keep-alive `http.client` POST of OpenAI's multipart form to the shim. Goals: ≤ 15 ms added on the 3 s clip,
≤ 3 % on the 30 s clip.

Direct, with the real engine (what a user sees). "In-process spread" is half the range of the in-process
runs: when it is larger than the difference, the difference is noise.

{over_table or '(skipped)'}

Decomposed, with less noise: the same uploads to a stack running the no-op engine cost everything but the
model (HTTP, multipart, socket, framing, decode, scheduling, JSON), so their time minus the in-process decode
is what the framework adds; the last column divides it by the in-process decode + engine time above.

{null_table or '(skipped)'}

### Ceiling: the no-op engine

`whisperd --engine null --max-cold-workers 0` + `whisperd-shim` (default settings), a 0.5 s 16 kHz WAV
({len(small_upload())} bytes) per request, {seconds:.0f} s per level after a 1 s warm-up. Client: {client}.
The client, the shim and the daemon share {os.cpu_count()} cores; "CPU µs/req" is each process's CPU time
divided by the requests answered.

{ceiling_table}

{goal}

{'![ceiling](perf-ceiling.png)' if wrote_plot else ''}

### Profile under the concurrency-64 load (py-spy `--gil`, 100 Hz, {profile_s:.0f} s)

Only the thread holding the GIL is sampled, so the percentages are shares of each process's Python CPU work
(time in C under a Python frame - uvloop's epoll and socket calls, numpy - counts to that frame).

{prof_md}
"""
    if not args.no_write:
        update_section("overhead", body)
        print("written to docs/performance.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
