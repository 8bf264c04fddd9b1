"""The soak's workload and sampler, shared by test_soak.py (and usable on its own for a pilot)."""

from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from testing.speech import FOX_FILES, FOX_TEXT, LONG_FILE, LONG_TEXT, word_recall
from tests.stack.reliability.probes import descendants, fd_targets, rss_mb
from tests.stack.reliability.wire import Reply, upload

SHORT = {k: FOX_FILES[k].read_bytes() for k in ("wav", "mp3", "ogg", "webm", "m4a", "flac")}
LONG = LONG_FILE.read_bytes()


@dataclass
class Outcome:
    kind: str
    status: int
    seconds: float
    ok: bool  # the answer was the expected one (transcript recalled, or the expected refusal)
    detail: str = ""
    finished: float = field(default_factory=time.monotonic)


def workload(n: int, seed: int = 7) -> list[tuple[str, bytes, str]]:
    """(kind, bytes, filename): ~83% short commands, ~12% 32 s recordings, ~5% undecodable."""
    rng = random.Random(seed)
    jobs = []
    for i in range(n):
        r = rng.random()
        if r < 0.05:
            jobs.append(("bad", os.urandom(3000), "bad.wav"))
        elif r < 0.17:
            jobs.append(("long", LONG, "long.mp3"))
        else:
            fmt = rng.choice(sorted(SHORT))
            jobs.append(("short", SHORT[fmt], f"cmd.{fmt}"))
    return jobs


def run_one(url: str, kind: str, data: bytes, filename: str) -> Outcome:
    started = time.monotonic()
    try:
        r: Reply = upload(url, data, filename, timeout=600)
    except OSError as exc:  # a lost request: no answer at all
        return Outcome(kind, 0, time.monotonic() - started, False, f"{type(exc).__name__}: {exc}")
    took = time.monotonic() - started
    if kind == "bad":
        ok = r.status == 400 and r.error["code"] == "audio_decode_failed"
        return Outcome(kind, r.status, took, ok, "" if ok else r.body[:200].decode(errors="replace"))
    if r.status != 200:
        return Outcome(kind, r.status, took, False, r.body[:200].decode(errors="replace"))
    expected = LONG_TEXT if kind == "long" else FOX_TEXT
    recall = word_recall(expected, r.json()["text"])
    return Outcome(kind, r.status, took, recall >= 0.8, f"recall {recall:.2f}")


@dataclass
class Sampler:
    """RSS and open descriptors of the daemon (+ its workers) and the shim, once a second."""

    daemon_pid: int
    shim_pid: int
    interval: float = 1.0
    rows: list[dict] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> dict:
        kids = descendants(self.daemon_pid)

        def fds(pid: int) -> int:
            try:
                return len(fd_targets(pid))
            except OSError:
                return 0

        return {
            "t": time.monotonic(),
            "daemon_rss": rss_mb(self.daemon_pid),
            "children_rss": sum(rss_mb(p) for p in kids),
            "shim_rss": rss_mb(self.shim_pid),
            "daemon_fds": fds(self.daemon_pid),
            "children_fds": sum(fds(p) for p in kids),
            "shim_fds": fds(self.shim_pid),
            "children": len(kids),
        }

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.rows.append(self.sample())

    def __enter__(self) -> "Sampler":
        self.rows.append(self.sample())
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.rows.append(self.sample())


def run(url: str, jobs: list[tuple[str, bytes, str]], concurrency: int = 16) -> list[Outcome]:
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(lambda job: run_one(url, *job), jobs))
