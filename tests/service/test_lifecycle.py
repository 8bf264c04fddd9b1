"""The daemon's lifecycle (`whisperd.daemon.main.Daemon`): startup, serve, shutdown.

In-process on the null engine (or a gated engine that answers only when told),
and as a child `python -m whisperd --engine null` for real signals. No model
weights are read; every wait is on an event, a socket or a process.
"""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading

import pytest

from testing.stack import CACHE, ROOT
from tests.service.inprocess_daemon import GatedEngine, wav_bytes
from whisperd.client import AsyncClient
from whisperd.core.errors import WhisperdError
from whisperd.daemon import main
from whisperd.daemon.main import Daemon, Phase

ALL_PHASES = [Phase.STARTING, Phase.SERVING, Phase.STOPPING, Phase.STOPPED]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in [k for k in os.environ if k.startswith(("WHISPERD_", "NOTIFY_", "LISTEN_", "WATCHDOG_"))]:
        monkeypatch.delenv(name)
    yield
    gc.unfreeze()  # startup freezes the heap; this process is pytest's


@pytest.fixture
def sock_path():
    # AF_UNIX paths are capped at 108 bytes: a short folder under /tmp.
    folder = tempfile.mkdtemp(prefix="lc-", dir="/tmp")
    yield os.path.join(folder, "w.sock")
    shutil.rmtree(folder, ignore_errors=True)


def daemon_for(path: str, *flags: str) -> Daemon:
    argv = ["--config", "/dev/null", "--socket", path, "--cache-dir", str(CACHE), "--engine", "null",
            "--max-cold-workers", "0", *flags]
    config, _ = main.load_config(argv)
    return Daemon(config, argv)


@pytest.fixture
def held_engine(monkeypatch):
    engine = GatedEngine(text="held")
    monkeypatch.setattr(main, "load_hot_engine", lambda config, model: (engine, 1))
    yield engine
    engine.release.set()  # whatever still waits in the hot lane's thread may finish


# --- signals only set flags -------------------------------------------------------------


def test_a_signal_sets_flags_and_nothing_else(sock_path):
    d = daemon_for(sock_path)
    d.handle_signal(signal.SIGHUP)
    assert (d.reload_requested, d.should_exit, d.force_exit) == (True, False, False)
    d.handle_signal(signal.SIGTERM)
    assert (d.should_exit, d.force_exit) == (True, False)
    d.handle_signal(signal.SIGINT)  # a second exit signal of either kind forces the stop
    assert (d.should_exit, d.force_exit) == (True, True)
    assert d.exit_signals == ["SIGTERM", "SIGINT"]
    assert d.phases == [] and not os.path.exists(sock_path)


# --- in process -----------------------------------------------------------------------


async def test_phases_run_in_order_and_shutdown_unlinks_the_socket(sock_path):
    d = daemon_for(sock_path)
    run = asyncio.ensure_future(d.run())
    await asyncio.wait_for(d.wait_until(Phase.SERVING), 30)
    assert d.phases == [Phase.STARTING, Phase.SERVING]
    async with AsyncClient(sock_path) as client:
        assert (await client.status()).ready
        assert (await client.transcribe(wav_bytes(1.0))).transcript.duration == 1.0
    d.handle_signal(signal.SIGTERM)
    assert await asyncio.wait_for(run, 30) == 0
    assert d.phases == ALL_PHASES
    assert not os.path.exists(sock_path)


async def test_an_exit_signal_during_startup_skips_serving(sock_path):
    d = daemon_for(sock_path)
    d.handle_signal(signal.SIGTERM)  # arrives while the model would load
    assert await asyncio.wait_for(d.run(), 30) == 0
    assert d.phases == [Phase.STARTING, Phase.STOPPING, Phase.STOPPED]
    assert d.server is None and not os.path.exists(sock_path)


async def test_a_second_signal_during_a_model_load_stops_without_waiting_for_it(sock_path, monkeypatch):
    loading, release = threading.Event(), threading.Event()

    def slow_load(config, model):  # a conversion of a large checkpoint, say
        loading.set()
        release.wait(60)
        raise RuntimeError("released by the test")

    monkeypatch.setattr(main, "load_hot_engine", slow_load)
    d = daemon_for(sock_path)
    run = asyncio.ensure_future(d.run())
    try:
        await asyncio.wait_for(asyncio.to_thread(loading.wait, 30), 35)
        d.handle_signal(signal.SIGINT)
        d.handle_signal(signal.SIGINT)
        assert await asyncio.wait_for(run, 30) == 1
        assert d.phases == [Phase.STARTING, Phase.STOPPING, Phase.STOPPED]
        assert not release.is_set() and not os.path.exists(sock_path)
    finally:
        release.set()


async def test_a_failed_start_leaves_another_daemons_socket_alone(sock_path):
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(sock_path)
    other.listen()
    try:
        d = daemon_for(sock_path)
        with pytest.raises(OSError, match="already listening"):
            await asyncio.wait_for(d.run(), 30)
        assert d.phases == [Phase.STARTING, Phase.STOPPING, Phase.STOPPED]
        assert os.path.exists(sock_path)  # not ours to unlink
    finally:
        other.close()


async def _start_held_request(d: Daemon, engine: GatedEngine, client: AsyncClient) -> asyncio.Future:
    await asyncio.wait_for(d.wait_until(Phase.SERVING), 30)
    request = asyncio.ensure_future(client.transcribe(wav_bytes(1.0)))
    await asyncio.wait_for(asyncio.to_thread(engine.started.wait, 30), 35)
    return request


async def test_one_signal_drains_in_flight_work_then_exits_0(sock_path, held_engine):
    d = daemon_for(sock_path, "--shutdown-grace", "300")
    run = asyncio.ensure_future(d.run())
    async with AsyncClient(sock_path) as client:
        request = await _start_held_request(d, held_engine, client)
        d.handle_signal(signal.SIGTERM)
        await asyncio.wait_for(d.wait_until(Phase.STOPPING), 30)
        assert not request.done() and not run.done()  # the drain waits for the held request
        held_engine.release.set()
        reply = await asyncio.wait_for(request, 30)
    assert reply.text == "held"
    assert await asyncio.wait_for(run, 30) == 0
    assert d.phases == ALL_PHASES and not os.path.exists(sock_path)


async def test_a_second_signal_cuts_the_drain_short_and_exits_1(sock_path, held_engine):
    d = daemon_for(sock_path, "--shutdown-grace", "300")
    run = asyncio.ensure_future(d.run())
    async with AsyncClient(sock_path) as client:
        request = await _start_held_request(d, held_engine, client)
        d.handle_signal(signal.SIGTERM)
        await asyncio.wait_for(d.wait_until(Phase.STOPPING), 30)
        d.handle_signal(signal.SIGTERM)
        # Well inside the 300 s grace: the held request is cut, not waited for.
        assert await asyncio.wait_for(run, 30) == 1
        with pytest.raises(WhisperdError):
            await asyncio.wait_for(request, 30)
    assert d.force_exit and d.phases == ALL_PHASES
    assert not os.path.exists(sock_path)
    assert d.server is not None and d.server.daemon_status().draining


# --- a child process, real signals -------------------------------------------------------


@pytest.fixture
def notify_socket(sock_path):
    """A datagram socket standing in for systemd's NOTIFY_SOCKET: READY=1 says the daemon serves."""
    path = os.path.join(os.path.dirname(sock_path), "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(30)
    yield path, sock
    sock.close()


def _messages_until(sock: socket.socket, line: str) -> list[str]:
    seen: list[str] = []
    while line not in seen:
        seen += sock.recv(4096).decode().splitlines()
    return seen


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_child_stops_on_a_signal_exits_0_and_unlinks_its_socket(sock_path, notify_socket, signum):
    notify_path, notify = notify_socket
    env = dict(os.environ, NOTIFY_SOCKET=notify_path, PYTHONUNBUFFERED="1")
    child = subprocess.Popen(
        [sys.executable, "-m", "whisperd", "--config", "/dev/null", "--socket", sock_path,
         "--cache-dir", str(CACHE), "--engine", "null", "--max-cold-workers", "0"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        _messages_until(notify, "READY=1")
        assert os.path.exists(sock_path)
        child.send_signal(signum)
        _messages_until(notify, "STOPPING=1")
        out = child.communicate(timeout=30)[0].decode()
        assert child.returncode == 0, out
        assert not os.path.exists(sock_path)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
