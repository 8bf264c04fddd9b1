"""Fixtures for the reliability suite: a daemon with a low duration limit, and leak accounting."""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import pytest

from testing.stack import Daemon, Shim
from tests.stack.reliability.probes import Snapshot, hwm_mb, snapshot, wait_until
from whisperd.client import Client
from whisperd.core.replies import DaemonStatus

BOUNDED_MAX_SECONDS = 600


class Watched:
    """A daemon + shim pair whose descriptors, processes and files are accounted for."""

    def __init__(self, daemon: Daemon, shim: Shim, tmpdir: str | None = None) -> None:
        self.daemon, self.shim, self.tmpdir = daemon, shim, tmpdir
        self.url = shim.url

    def status(self) -> DaemonStatus:
        with Client(self.daemon.socket, timeout=30) as c:
            return c.status()

    def idle(self) -> bool:
        s = self.status()
        return s.queue == 0 and s.running == 0 and s.loading == 0

    def snapshot(self) -> Snapshot:
        workers = [lane.pid for lane in self.status().lanes if lane.kind == "cold" and lane.pid]
        time.sleep(0.2)  # let the daemon close its end of the status connection
        return snapshot(self.daemon.proc.pid, self.shim.proc.pid, workers,
                        keep_open=[self.daemon.log_path, self.shim.log_file.name])

    def settle(self, timeout: float = 30.0) -> Snapshot:
        wait_until(self.idle, timeout, "the daemon to be idle")
        return self.snapshot()

    def assert_no_leak(self, before: Snapshot, timeout: float = 20.0) -> Snapshot:
        """Poll until the accounting matches `before` (asynchronous closes take a moment)."""
        deadline = time.monotonic() + timeout
        while True:
            after = self.settle()
            if _comparable(after) == _comparable(before) and _workers_ok(after):
                break
            if time.monotonic() > deadline:
                assert _comparable(after) == _comparable(before), (before, after)
                assert _workers_ok(after), after
        assert self.daemon.proc.poll() is None and self.shim.proc.poll() is None
        assert sorted(os.listdir(self.daemon.dir)) == ["daemon.log", "w.sock"], os.listdir(self.daemon.dir)
        if self.tmpdir is not None:
            assert os.listdir(self.tmpdir) == [], f"files left in the daemon's TMPDIR: {os.listdir(self.tmpdir)}"
        return after


def _comparable(s: Snapshot) -> dict:
    fds = dict(s.fds)
    # One exit-status pipe from the fork server per cold worker: count the fixed part only.
    if "daemon:pipe:forkserver" in fds:
        fds["daemon:pipe:forkserver"] -= s.workers
    return {"fds": fds, "processes": s.processes, "zombies": s.zombies, "tmp_open": s.tmp_open,
            # every daemon-side connection from the shim is one of the shim's pooled connections
            "shim_links_match_pool": s.shim_links == s.shim_pool}


def _workers_ok(s: Snapshot) -> bool:
    return (s.worker_fds == 0) if s.workers == 0 else (0 < s.worker_fds <= 4 * s.workers)


@pytest.fixture(scope="session")
def bounded_stack():
    """Its own daemon: max_audio_seconds 600, hot worker only, a private (checked) TMPDIR."""
    tmpdir = tempfile.mkdtemp(prefix="wd-rel-tmp-")
    env = {"TMPDIR": tmpdir}
    daemon = Daemon("--engine", "faster-whisper", "--max-audio-seconds", str(BOUNDED_MAX_SECONDS),
                    "--max-cold-workers", "0", env=env)
    shim = Shim(daemon.socket, env=env)
    watched = Watched(daemon, shim, tmpdir)
    watched.baseline = watched.settle()
    watched.baseline_hwm = hwm_mb(daemon.proc.pid)
    yield watched
    shim.stop()
    daemon.stop()
    shutil.rmtree(tmpdir, ignore_errors=True)


@pytest.fixture(scope="session")
def fw_watched(fw_stack):
    return Watched(fw_stack.daemon, fw_stack.shim)
