"""whisperd.daemon.systemd against real sockets: notify, watchdog, socket activation."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from whisperd.core import logs
from whisperd.daemon import systemd

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    # Tests may run under a real systemd unit; never talk to the real one.
    for name in (
        "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
        "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "JOURNAL_STREAM",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def short_dir():
    # AF_UNIX paths are capped at 108 bytes; pytest's tmp_path can exceed that.
    path = tempfile.mkdtemp(prefix="wd-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def notify_sock(short_dir, monkeypatch):
    path = os.path.join(short_dir, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    yield sock
    sock.close()


def drain(sock: socket.socket) -> list[bytes]:
    """Every datagram waiting now, without blocking."""
    got = []
    sock.setblocking(False)
    try:
        while True:
            got.append(sock.recv(4096))
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(2)
    return got


# -- notify -------------------------------------------------------------------


def test_notify_without_socket_is_a_noop():
    assert systemd.notify("READY=1") is False
    assert systemd.ready("x") is False
    assert systemd.watchdog() is False


def test_notify_unreachable_socket_returns_false(monkeypatch, short_dir):
    monkeypatch.setenv("NOTIFY_SOCKET", os.path.join(short_dir, "nobody-listens"))
    assert systemd.notify("READY=1") is False


def test_notify_relative_path_is_ignored(monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", "relative/notify")
    assert systemd.notify("READY=1") is False


def test_ready_status_stopping_watchdog(notify_sock):
    assert systemd.ready("Listening on /run/whisperd/whisperd.sock") is True
    assert notify_sock.recv(4096) == b"READY=1\nSTATUS=Listening on /run/whisperd/whisperd.sock"
    assert systemd.ready() is True
    assert notify_sock.recv(4096) == b"READY=1"
    assert systemd.status("Loading model tiny.en") is True
    assert notify_sock.recv(4096) == b"STATUS=Loading model tiny.en"
    assert systemd.watchdog() is True
    assert notify_sock.recv(4096) == b"WATCHDOG=1"
    assert systemd.stopping() is True
    assert notify_sock.recv(4096) == b"STOPPING=1"
    assert systemd.stopping("Draining 2 requests") is True
    assert notify_sock.recv(4096) == b"STOPPING=1\nSTATUS=Draining 2 requests"


def test_notify_sends_lines_in_one_datagram(notify_sock):
    assert systemd.notify("READY=1", "STATUS=ok", "MAINPID=1") is True
    assert notify_sock.recv(4096) == b"READY=1\nSTATUS=ok\nMAINPID=1"


def test_status_newlines_cannot_inject_assignments(notify_sock):
    systemd.status("line one\nWATCHDOG=trigger")
    assert notify_sock.recv(4096) == b"STATUS=line one WATCHDOG=trigger"


def test_notify_abstract_namespace(monkeypatch):
    name = f"whisperd-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.ready() is True
        assert sock.recv(4096) == b"READY=1"


# -- watchdog ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, None),
        ({"WATCHDOG_USEC": "200000"}, 0.1),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "x"}, None),
    ],
)
def test_watchdog_interval(monkeypatch, env, expected):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert systemd.watchdog_interval() == expected


def test_watchdog_interval_for_our_pid(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert systemd.watchdog_interval() == 0.1


async def test_watchdog_off_is_a_noop(notify_sock):
    wd = systemd.Watchdog()
    assert wd.interval is None
    assert wd.start() is False
    await wd.stop()
    assert drain(notify_sock) == []


async def test_watchdog_pings_while_loop_runs_and_stops_when_it_blocks(notify_sock, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # ping every 0.1 s
    wd = systemd.Watchdog()
    assert wd.start() is True and wd.interval == 0.1
    try:
        await asyncio.sleep(0.55)
        pings = drain(notify_sock)
        assert set(pings) == {b"WATCHDOG=1"}
        assert len(pings) >= 3

        # The loop is stuck: nothing may ping for it.
        time.sleep(0.5)
        assert drain(notify_sock) == []

        # It turns again: the pings come back.
        await asyncio.sleep(0.35)
        assert len(drain(notify_sock)) >= 2
    finally:
        await wd.stop()

    # Stopped: no more pings.
    drain(notify_sock)
    await asyncio.sleep(0.3)
    assert drain(notify_sock) == []


# -- listen_fds ---------------------------------------------------------------------


def test_listen_fds_none_passed():
    assert systemd.listen_fds() == []


def test_listen_fds_for_another_pid_is_ignored_and_unset(monkeypatch):
    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1))
    monkeypatch.setenv("LISTEN_FDS", "1")
    monkeypatch.setenv("LISTEN_FDNAMES", "whisperd.socket")
    assert systemd.listen_fds() == []
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        assert name not in os.environ


def test_listen_fds_malformed(monkeypatch):
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    monkeypatch.setenv("LISTEN_FDS", "many")
    assert systemd.listen_fds() == []
    assert "LISTEN_FDS" not in os.environ


# The child stands in for systemd: it moves the listener onto fd 3, sets
# LISTEN_PID to its own pid and execs, so the daemon side sees exactly what
# a socket-activated service sees.
ACTIVATE = textwrap.dedent(
    """
    import os, sys
    fd = int(sys.argv[1])
    os.dup2(fd, 3)  # inheritable, like systemd's
    os.close(fd)
    os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1", LISTEN_FDNAMES="whisperd.socket")
    os.execv(sys.executable, [sys.executable, "-c", sys.argv[2]])
    """
)

DAEMON = textwrap.dedent(
    """
    import fcntl, os, socket
    from whisperd.daemon.systemd import listen_fds
    socks = listen_fds()
    assert [s.fileno() for s in socks] == [3], socks
    assert fcntl.fcntl(3, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    assert not {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} & set(os.environ)
    listener = socks[0]
    assert listener.family == socket.AF_UNIX and listener.type == socket.SOCK_STREAM
    print("ready", flush=True)
    conn, _ = listener.accept()
    conn.sendall(b"pong:" + conn.recv(64))
    conn.close()
    """
)


def test_listen_fds_in_an_activated_child(short_dir):
    path = os.path.join(short_dir, "activated.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    fd = listener.fileno()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(name, None)
    child = subprocess.Popen(
        [sys.executable, "-c", ACTIVATE, str(fd), DAEMON],
        pass_fds=(fd,), env=env, cwd=str(REPO),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    listener.close()  # only the child holds the listener now
    try:
        assert child.stdout.readline() == b"ready\n", child.stderr.read().decode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(10)
            client.connect(path)
            client.sendall(b"ping")
            assert client.recv(64) == b"pong:ping"
        assert child.wait(timeout=10) == 0, child.stderr.read().decode()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        child.stderr.close()


# -- journald ---------------------------------------------------------------------


def test_under_journald_unset():
    assert logs.under_journald() is False


def test_under_journald_matches_stream_identity(monkeypatch, tmp_path):
    with open(tmp_path / "journal", "w") as journal, open(tmp_path / "other", "w") as other:
        st = os.fstat(journal.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert logs.under_journald(journal) is True
        # Inherited variable, but stderr was redirected elsewhere.
        assert logs.under_journald(other) is False


def test_under_journald_checks_fd_2_by_default(monkeypatch):
    st = os.fstat(2)
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    assert logs.under_journald() is True
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")
    assert logs.under_journald() is False


def test_under_journald_malformed_value(monkeypatch):
    monkeypatch.setenv("JOURNAL_STREAM", "journal")
    assert logs.under_journald() is False


def test_under_journald_unstatable_stream_trusts_the_variable(monkeypatch):
    import io

    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    assert logs.under_journald(io.StringIO()) is True
