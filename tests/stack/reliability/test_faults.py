"""Faults: the daemon killed, the shim restarted, clients that leave, full filesystems, overload.

Covered elsewhere and referenced from docs/reliability.md: kill -9 of a cold worker
mid-request (tests/stack/test_pool.py), SIGTERM with three requests in flight
(tests/stack/test_daemon_system.py), a socket client hanging up mid-inference and while
queued (tests/stack/test_socket_server.py), an HTTP client timing out mid-inference
(tests/stack/test_api_streaming.py).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

import testing.stack
from testing.speech import FOX_FILES, FOX_TEXT, LONG_FILE, LONG_TEXT, long_speech_wav, word_recall
from testing.stack import CACHE, Daemon, Shim, drops, status
from tests.stack.reliability.conftest import Watched
from tests.stack.reliability.media import tone, wav
from tests.stack.reliability.probes import (
    descendants,
    rss_mb,
    state,
    unix_listen_paths,
    wait_until,
)
from tests.stack.reliability.wire import assert_openai_error, audio_form, upload
from whisperd.client import Client

FOX = FOX_FILES["wav"].read_bytes()
LONG = LONG_FILE.read_bytes()
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount, unshare)")


def in_thread(fn, *args, **kwargs) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run():
        try:
            out["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def shim_on_port(sock: str, port: int, *args: str) -> Shim:
    """A shim on a given port (a restart keeps its address)."""
    original = testing.stack.free_port
    testing.stack.free_port = lambda: port
    try:
        return Shim(sock, *args)
    finally:
        testing.stack.free_port = original


# --- the daemon dies under the shim ----------------------------------------------------------


def test_daemon_killed_mid_request_then_the_shim_recovers_by_itself():
    # One hot slot: the long file's windows go to the cold worker, not the slot.
    d = Daemon("--engine", "faster-whisper", "--long-audio-seconds", "10", "--max-cold-workers", "1",
               "--hot-slots", "1")
    shim = Shim(d.socket)
    d2 = None
    try:
        assert upload(shim.url, FOX).status == 200  # the shim's pool now holds a live connection
        t, out = in_thread(upload, shim.url, LONG, "long.mp3")
        wait_until(lambda: any(lane.kind == "cold" and lane.state == "busy" for lane in status(d.socket).lanes),
                   60, "the long file to run on a cold worker")
        family = descendants(d.proc.pid)  # fork server, resource tracker, the cold worker
        fork_dirs = {os.path.dirname(p) for pid in family for p in unix_listen_paths(pid)}
        assert fork_dirs, "no fork server listening"
        killed_at = time.monotonic()
        d.proc.kill()
        d.proc.wait()
        t.join(30)
        # The request in flight is answered at once, in OpenAI's shape, with Retry-After.
        assert_openai_error(out["value"], 503, "not_ready")
        assert time.monotonic() - killed_at < 5
        # While no daemon runs: every request is a clear 503, health says so.
        assert_openai_error(upload(shim.url, FOX), 503, "not_ready")
        code, body = shim.get("/health")
        assert code == 503 and json.loads(body)["status"] == "unavailable"
        # Nothing of the dead daemon lives on: its children notice and exit.
        wait_until(lambda: all(state(p) in ("gone", "Z") for p in family), 30, "the orphans to exit")
        # All a kill -9 leaves behind: the fork server's directory (0700) with its socket file,
        # which a clean stop removes (and systemd's PrivateTmp= clears). No regular file.
        for fork_dir in fork_dirs:
            assert fork_dir.startswith(tempfile.gettempdir() + "/pymp-"), fork_dir
            left = [os.path.join(fork_dir, n) for n in os.listdir(fork_dir)] if os.path.isdir(fork_dir) else []
            assert all(stat.S_ISSOCK(os.lstat(p).st_mode) for p in left), left
            shutil.rmtree(fork_dir, ignore_errors=True)
        # A new daemon on the same socket path (the stale socket file is replaced) ...
        d2 = Daemon("--engine", "faster-whisper", "--socket", d.socket, wait=False)
        d2.socket = d.socket
        d2.wait_ready()
        # ... and the same shim process serves again, with no restart and no retry by the client.
        r = upload(shim.url, FOX)
        assert r.status == 200, r.body
        assert word_recall(FOX_TEXT, r.json()["text"]) >= 0.8
        assert shim.get("/health")[0] == 200
        assert shim.proc.poll() is None
    finally:
        shim.stop()
        if d2 is not None:
            d2.stop()
        d.stop()


def test_shim_restarted_while_the_daemon_is_busy(fw_stack):
    """Work in flight from another client finishes; a new shim on the same port serves."""
    sock = fw_stack.daemon.socket
    first = Shim(sock)
    port = first.port

    def socket_client_long():
        with Client(sock, timeout=300) as c:
            return c.transcribe(LONG)

    t_long, long_out = in_thread(socket_client_long)
    t_http, http_out = in_thread(upload, first.url, FOX, "fox.wav")
    wait_until(lambda: status(sock).running >= 1, 30, "work in flight")
    first.stop()  # SIGINT: aiohttp finishes its in-flight handlers (shutdown_timeout 10 s)
    second = shim_on_port(sock, port)
    try:
        r = upload(second.url, FOX, "after.wav")
        assert r.status == 200 and word_recall(FOX_TEXT, r.json()["text"]) >= 0.8
        t_http.join(60)
        t_long.join(300)
        assert "error" not in long_out, long_out
        assert word_recall(LONG_TEXT, long_out["value"].text) >= 0.8
        # The HTTP request in flight through the old shim was answered before it exited.
        assert http_out["value"].status == 200, http_out
    finally:
        second.stop()


# --- clients that leave ------------------------------------------------------------------------


def _metric(shim: Shim, status: int) -> float:
    code, body = shim.get("/metrics")
    for line in body.decode().splitlines():
        if line.startswith('whisperd_http_requests_total{route="/v1/audio/transcriptions",status="%d"}' % status):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def uploads_held(shim: Shim) -> float:
    code, body = shim.get("/metrics")
    for line in body.decode().splitlines():
        if line.startswith("whisperd_upload_bytes_held "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no whisperd_upload_bytes_held in /metrics")


@pytest.fixture(scope="module")
def fw_before(fw_watched):
    return fw_watched.settle()


def test_client_leaves_mid_upload(fw_stack, fw_before):
    headers, body = audio_form(LONG, "long.mp3")
    before_499 = _metric(fw_stack.shim, 499)
    served = status(fw_stack.daemon.socket).served
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", fw_stack.shim.port), timeout=10)
        s.sendall(f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {headers['Content-Type']}\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n".encode() + body[: len(body) // 2])
        time.sleep(0.2)
        s.close()
    wait_until(lambda: _metric(fw_stack.shim, 499) >= before_499 + 5, 10, "five 499s in the shim's metrics")
    s = status(fw_stack.daemon.socket)
    assert s.served == served and s.running == 0  # nothing reached the daemon
    assert upload(fw_stack.url, FOX).status == 200


def test_client_leaves_mid_inference_on_a_cold_worker(fw_stack, fw_before):
    """The long file runs on a cold worker; the client leaves; the worker stops at its next segment."""
    sock = fw_stack.daemon.socket
    dropped = drops(fw_stack.daemon.socket)
    headers, body = audio_form(LONG, "long.mp3")
    s = socket.create_connection(("127.0.0.1", fw_stack.shim.port), timeout=10)
    s.sendall(f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {headers['Content-Type']}\r\n"
              f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    wait_until(lambda: status(sock).running >= 1, 30, "the long file to start")
    s.close()
    left = time.monotonic()
    wait_until(lambda: drops(fw_stack.daemon.socket) > dropped, 15, "the drop")
    # The lane is free long before the file would have finished (~6-8 s on two cores).
    wait_until(lambda: status(sock).running == 0, 15, "the lane to be free")
    assert time.monotonic() - left < 5


def test_client_leaves_mid_stream(fw_stack, fw_before):
    dropped = drops(fw_stack.daemon.socket)
    # ~130 s: more windows than lanes, so the first delta comes well before the last window.
    headers, body = audio_form(long_speech_wav(4), "long.wav", stream="true")
    s = socket.create_connection(("127.0.0.1", fw_stack.shim.port), timeout=60)
    s.sendall(f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {headers['Content-Type']}\r\n"
              f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    first = s.recv(65536)
    assert first.startswith(b"HTTP/1.1 200") and b"text/event-stream" in first
    while b"transcript.text.delta" not in first:
        first += s.recv(65536)
    s.close()  # after the first delta
    wait_until(lambda: drops(fw_stack.daemon.socket) > dropped, 15, "the drop")
    wait_until(lambda: status(fw_stack.daemon.socket).running == 0, 15, "the lane to be free")


def test_nothing_leaked_after_the_hang_ups(fw_watched, fw_before):
    fw_watched.assert_no_leak(fw_before)


# --- full filesystems -----------------------------------------------------------------------


class FullFs:
    """A 64 KiB tmpfs filled to the last block and (optionally) the last inode."""

    def __init__(self, inodes: bool = True) -> None:
        self.path = tempfile.mkdtemp(prefix="wd-full-")
        opts = "size=64k,nr_inodes=64" if inodes else "size=64k"
        subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", self.path], check=True)
        try:
            with open(os.path.join(self.path, "fill"), "wb") as f:
                f.write(b"\0" * (1 << 20))
        except OSError:
            pass
        if inodes:
            i = 0
            while True:
                try:
                    open(os.path.join(self.path, f"i{i}"), "x").close()
                except OSError:
                    break
                i += 1

    def close(self) -> None:
        subprocess.run(["umount", self.path], check=False)
        shutil.rmtree(self.path, ignore_errors=True)


def _run_daemon(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "whisperd", "--config", "/dev/null", "--engine", "faster-whisper",
                           *args], capture_output=True, text=True, timeout=timeout, cwd=testing.stack.ROOT,
                          env=testing.stack._env())


@root_only
@pytest.mark.parametrize("where", ["new-dir", "existing-dir"])
def test_socket_on_a_full_filesystem_is_a_clear_error(where):
    fs = FullFs()
    try:
        path = os.path.join(fs.path, "run", "w.sock") if where == "new-dir" else os.path.join(fs.path, "w.sock")
        r = _run_daemon("--socket", path, "--cache-dir", str(CACHE))
        assert r.returncode == 1, r.stderr
        assert "Traceback" not in r.stderr
        line = next(l for l in r.stderr.splitlines() if "cannot start" in l)
        assert "No space left on device" in line
        assert os.path.dirname(path) in line, f"the error does not say where (known bug): {line!r}"
    finally:
        fs.close()


@root_only
def test_full_cache_dir_does_not_stop_the_default_model():
    """The embedded tiny.en needs no cache; the extra `base` model is assembled into it.

    Known bug (reported): assembling `base` at start-up fails with ENOSPC and the
    daemon exits, though the model it was asked to serve needs no cache at all.
    """
    fs = FullFs(inodes=False)
    d = None
    try:
        d = Daemon("--engine", "faster-whisper", "--cache-dir", os.path.join(fs.path, "cache"), wait=False)
        try:
            d.wait_ready(60)
        except RuntimeError as exc:
            pytest.fail(f"known bug: the daemon did not start with a full cache dir: {str(exc)[-400:]}")
        with Client(d.socket, timeout=60) as c:
            assert word_recall(FOX_TEXT, c.transcribe(FOX).text) >= 0.8
        assert "No space left on device" in d.log()  # said once, as a warning
        assert not [n for n in os.listdir(os.path.join(fs.path, "cache", "assembled")) if n.startswith(".assemble")]
    finally:
        if d is not None:
            d.stop()
        fs.close()


FILL_TMP = """
set -e
for d in /tmp /var/tmp; do
  mount -t tmpfs -o size=64k,nr_inodes=32 tmpfs "$d"
  dd if=/dev/zero of="$d/fill" bs=4k 2>/dev/null || true
  i=0; while touch "$d/i$i" 2>/dev/null; do i=$((i+1)); done
done
cd /tmp
exec "$@"
"""


class FullTmpDaemon(Daemon):
    """whisperd in its own mount namespace where /tmp and /var/tmp (and its cwd) are full.

    TMPDIR alone is not enough: Python's tempfile silently falls back to /tmp,
    then to the working directory, when TMPDIR is not writable.
    """

    def __init__(self, *args: str) -> None:
        self.dir = tempfile.mkdtemp(prefix="wd-rel-", dir="/run")  # outside the hidden /tmp
        self.socket = os.path.join(self.dir, "w.sock")
        self.log_path = os.path.join(self.dir, "daemon.log")
        self._log = open(self.log_path, "wb")
        cmd = ["unshare", "-m", "--propagation", "private", "--", "sh", "-c", FILL_TMP, "sh",
               sys.executable, "-m", "whisperd", "--config", "/dev/null", "--socket", self.socket,
               "--cache-dir", str(CACHE), *args]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=testing.stack._env({"TMPDIR": "/tmp"}))
        self.wait_ready()


@pytest.fixture(scope="module")
def full_tmp_daemon():
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare")
    if any(str(p).startswith(("/tmp/", "/var/tmp/")) for p in (testing.stack.ROOT, sys.executable)):
        pytest.skip("the checkout itself is under /tmp, which this test hides behind a full tmpfs")
    d = FullTmpDaemon("--engine", "faster-whisper", "--long-audio-seconds", "10")
    yield d
    d.stop()


def test_full_tmp_does_not_break_transcription(full_tmp_daemon):
    """Decoding is in memory: with no writable temp dir at all, requests are still served."""
    with Client(full_tmp_daemon.socket, timeout=60) as c:
        for name in ("wav", "mp3", "m4a"):
            reply = c.transcribe(FOX_FILES[name].read_bytes())
            assert word_recall(FOX_TEXT, reply.text) >= 0.8 and reply.worker == "hot"


def test_full_tmp_long_file_is_answered_when_cold_workers_cannot_start(full_tmp_daemon):
    """Cold workers need the fork server, which needs a temp dir for its socket.

    Known bug (reported): when a cold worker cannot start, the pool spawns again at
    once, forever (~500 failed spawns a second, two log lines each), and the long
    file - kept off the hot worker "while a cold worker could take it" - is never
    answered.
    """
    t, out = in_thread(lambda: Client(full_tmp_daemon.socket, timeout=25).transcribe(LONG))
    t.join(30)
    failures = full_tmp_daemon.log().count("failed to start")
    assert "value" in out, f"known bug: the long file was not answered ({out.get('error')!r}); " \
                           f"{failures} failed spawns logged"
    assert word_recall(LONG_TEXT, out["value"].text) >= 0.8
    assert failures <= 10, f"known bug: {failures} failed spawns"


# --- short behind long ------------------------------------------------------------------------


def test_short_request_does_not_wait_behind_long_ones_over_http(fw_stack):
    """Nine 32 s recordings in flight through the shim, then a 3.8 s command.

    The daemon runs the command on the hot worker at once (the socket path shows it:
    ~0.2 s). Known bug (reported): the shim sends at most `--connections` (8)
    requests to the daemon at a time, so the command waits inside the shim until
    a recording finishes - short requests wait behind long ones over HTTP.
    """
    import select

    headers, body = audio_form(LONG, "long.mp3")
    longs = []
    try:
        for _ in range(9):
            s = socket.create_connection(("127.0.0.1", fw_stack.shim.port), timeout=60)
            s.sendall(f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {headers['Content-Type']}"
                      f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
            longs.append(s)
        wait_until(lambda: status(fw_stack.daemon.socket).running >= 1, 30, "the recordings to start")
        started = time.monotonic()
        reply = upload(fw_stack.url, FOX, "command.wav")
        took = time.monotonic() - started
        assert reply.status == 200 and reply.headers.get("X-Whisperd-Worker") == "hot"
        finished = select.select(longs, [], [], 0)[0]
        assert not finished, f"known bug: the command took {took:.1f} s, answered only after " \
                             f"{len(finished)} of the recordings finished (the shim's connection pool was full)"
    finally:
        for s in longs:
            s.close()  # the daemon drops what is left
        wait_until(lambda: status(fw_stack.daemon.socket).running == 0, 60, "the dropped recordings to stop")


# --- overload --------------------------------------------------------------------------------


def test_overload_over_http_is_503_with_retry_after_and_memory_stays_bounded():
    d = Daemon("--engine", "faster-whisper", "--queue-size", "2", "--max-cold-workers", "0")
    shim = Shim(d.socket)
    watched = Watched(d, shim)
    try:
        data = wav(tone(4))  # 128 KB, 4 s
        # Warm both slots of the hot worker at once (2 cores: 2 slots; the queue holds 2):
        # each allocates its inference memory once.
        with ThreadPoolExecutor(2) as pool:
            assert {r.status for r in pool.map(lambda _: upload(shim.url, data), range(2))} == {200}
        before = watched.settle()
        single_peak = rss_mb(d.proc.pid)
        peaks = {"daemon": 0.0, "shim": 0.0}
        done = threading.Event()

        def sample():
            while not done.is_set():
                peaks["daemon"] = max(peaks["daemon"], rss_mb(d.proc.pid))
                peaks["shim"] = max(peaks["shim"], rss_mb(shim.proc.pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.monotonic()
        with ThreadPoolExecutor(100) as pool:
            replies = list(pool.map(lambda _: upload(shim.url, data), range(100)))
        took = time.monotonic() - started
        done.set()
        sampler.join()
        outcome = Counter(r.status for r in replies)
        refused = [r for r in replies if r.status == 503]
        assert set(outcome) <= {200, 503} and len(refused) >= 80, outcome
        for r in refused:
            assert_openai_error(r, 503, "overloaded")
            assert r.headers["Retry-After"] == "1"
        # Refusals hold nothing: the daemon's memory while refusing 100 stays near one request's.
        assert peaks["daemon"] < single_peak + 150, (peaks, single_peak)
        print(f"\noverload: {dict(outcome)} in {took:.1f} s; daemon RSS peak {peaks['daemon']:.0f} MB "
              f"(after one request {single_peak:.0f} MB), shim {peaks['shim']:.0f} MB")
        watched.assert_no_leak(before)
    finally:
        shim.stop()
        d.stop()


def test_uploads_past_the_shims_byte_budget_are_503_and_the_budget_comes_back(fw_stack):
    shim = Shim(fw_stack.daemon.socket, "--max-buffered-bytes", "1M")
    try:
        audio = wav(tone(12.5))  # 400 KB
        # One client sends 800 KB of a 900 KB upload and stalls: the shim holds what it read.
        headers, body = audio_form(os.urandom(900_000), "big.wav")
        stalled = socket.create_connection(("127.0.0.1", shim.port), timeout=10)
        stalled.sendall(f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        f"Content-Type: {headers['Content-Type']}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                        + body[:800_000])
        # Every byte that reached the shim is held, including the chunk aiohttp's multipart
        # reader keeps back while it looks for the boundary (up to the 256 KiB read size).
        wait_until(lambda: uploads_held(shim) >= 800_000, 10, "the stalled upload's bytes to be held")
        refused = upload(shim.url, audio)
        err = assert_openai_error(refused, 503, "overloaded")
        assert "max_buffered_bytes" in err["message"] and refused.headers["Retry-After"] == "1"
        # A single upload over the whole budget is refused the same way.
        assert_openai_error(upload(shim.url, wav(tone(40))), 503, "overloaded")
        # The stalled client leaves: its bytes go back to the budget and uploads pass again.
        stalled.close()
        assert wait_until(lambda: upload(shim.url, audio).status == 200, 10, "the budget to come back")
        assert upload(shim.url, audio).status == 200  # and it stays back: nothing was leaked
        assert uploads_held(shim) == 0
    finally:
        shim.stop()
