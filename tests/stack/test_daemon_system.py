"""whisperd as a system daemon, run for real: sd_notify, socket activation, signals,
reload, journald lines, socket permissions, configuration errors."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from testing.speech import (
    FOX_FILES,
    FOX_TEXT,
    LONG_FILE,
    LONG_TEXT,
    long_speech_wav,
    word_recall,
)
from testing.stack import CACHE, ROOT, Daemon
from tests.stack.reliability.probes import cmdline, descendants, state, wait_until
from whisperd.client import Client
from whisperd.core.replies import DaemonStatus


class NotifyListener:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self) -> None:
        self.path = os.path.join(tempfile.mkdtemp(prefix="nt-", dir="/tmp"), "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def lines(self) -> list[str]:
        return [line for _, m in self.messages for line in m.splitlines()]

    def wait_for(self, line_prefix: str, timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, m in list(self.messages):
                if any(l.startswith(line_prefix) for l in m.splitlines()):
                    return t
            time.sleep(0.02)
        raise TimeoutError(f"no {line_prefix!r} in {self.lines()}")

    def close(self) -> None:
        self._stop = True
        self.sock.close()


def can_connect(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def test_notify_ready_status_watchdog_stopping():
    listener = NotifyListener()
    d = Daemon("--engine", "faster-whisper", wait=False,
               env={"NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "400000"})
    try:
        listener.wait_for("READY=1")
        # READY only once the socket accepts and the model answers.
        assert can_connect(d.socket)
        lines = listener.lines()
        loading = next(i for i, l in enumerate(lines) if l.startswith("STATUS=loading model tiny.en"))
        ready = lines.index("READY=1")
        assert loading < ready
        assert any(re.match(r"STATUS=ready: model tiny\.en, engine faster-whisper \(int8\), device cpu, queue 0", l)
                   for l in lines), lines
        first = len([l for l in listener.lines() if l == "WATCHDOG=1"])
        time.sleep(1.0)
        assert len([l for l in listener.lines() if l == "WATCHDOG=1"]) >= first + 2
        with Client(d.socket, timeout=60) as c:
            c.transcribe(FOX_FILES["wav"].read_bytes())
        deadline = time.monotonic() + 10
        while not any("served 1" in l for l in listener.lines()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(l.startswith("STATUS=ready") and "served 1" in l for l in listener.lines())
        assert d.stop() == 0
        assert "STOPPING=1" in listener.lines()
    finally:
        d.stop()
        listener.close()


def test_socket_activation_on_fd_3():
    """A listening socket handed over as fd 3 with LISTEN_PID/LISTEN_FDS, as systemd does."""
    path = os.path.join(tempfile.mkdtemp(prefix="sa-", dir="/tmp"), "act.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    fd = listener.fileno()

    def hand_over() -> None:  # in the child, just before exec: what systemd does
        os.dup2(fd, 3)
        os.environ["LISTEN_PID"] = str(os.getpid())
        os.environ["LISTEN_FDS"] = "1"
        for key in [k for k in os.environ if k.startswith(("WHISPERD_", "NOTIFY_"))]:
            del os.environ[key]

    cmd = [sys.executable, "-m", "whisperd", "--config", "/dev/null", "--cache-dir", str(CACHE),
           "--socket", "/nonexistent/unused.sock", "--engine", "faster-whisper"]
    proc = subprocess.Popen(cmd, preexec_fn=hand_over, close_fds=False, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    listener.close()  # the daemon holds it now
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with Client(path, timeout=30) as c:
                    status = c.status()
                    reply = c.transcribe(FOX_FILES["wav"].read_bytes())
                break
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        assert status.ready
        assert word_recall(FOX_TEXT, reply.text) >= 0.8
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, out
    assert "an activated socket" in out
    assert os.path.exists(path)  # an activated socket belongs to systemd: not unlinked


def _transcribe_in_thread(path: str, audio: bytes, out: dict) -> threading.Thread:
    def run() -> None:
        try:
            with Client(path, timeout=300) as c:
                out["reply"] = c.transcribe(audio)
        except Exception as exc:  # recorded for the assertion
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    return t


def running(path: str, kind: str) -> DaemonStatus | None:
    """The daemon's status once a request runs on a `kind` lane; None before."""
    with Client(path, timeout=30) as c:
        status = c.status()
    busy = [lane for lane in status.lanes if lane.kind == kind and lane.state == "busy"]
    return status if status.running and busy else None


def _alive(pids: list[int]) -> list[str]:
    return [f"{p}: {cmdline(p)[:120]}" for p in pids if state(p) not in ("gone", "Z")]


def test_sigterm_finishes_in_flight_work_then_exits_0():
    d = Daemon("--engine", "faster-whisper", "--max-cold-workers", "0", "--shutdown-grace", "300")
    try:
        results = [{} for _ in range(3)]
        threads = [_transcribe_in_thread(d.socket, f.read_bytes(), r)
                   for f, r in zip((LONG_FILE, FOX_FILES["wav"], FOX_FILES["mp3"]), results)]
        # The long one is running (its ~1 s of work is a wide window for a poll every 20 ms).
        wait_until(lambda: running(d.socket, "hot") or "reply" in results[0], 60, "the long request to run",
                   interval=0.02)
        assert "reply" not in results[0], "the long request finished before the test saw it run"
        d.proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(300)
        assert d.proc.wait(60) == 0, d.log()
        for r in results:
            assert "reply" in r, r
        assert word_recall(LONG_TEXT, results[0]["reply"].text) >= 0.8
        assert word_recall(FOX_TEXT, results[1]["reply"].text) >= 0.8
        assert not os.path.exists(d.socket)
    finally:
        d.stop()


def test_second_signal_stops_now():
    listener = NotifyListener()
    # A grace far longer than the test: only the second signal can end the drain in time.
    d = Daemon("--engine", "faster-whisper", "--max-cold-workers", "1", "--shutdown-grace", "300",
               env={"NOTIFY_SOCKET": listener.path})
    try:
        out: dict = {}
        # 320 s of speech: over long_audio_seconds, so a cold worker takes it, for many seconds.
        t = _transcribe_in_thread(d.socket, long_speech_wav(10), out)
        status = wait_until(lambda: running(d.socket, "cold"), 120, "the long request to run on a cold worker")
        family = descendants(d.proc.pid)
        workers = [lane.pid for lane in status.lanes if lane.kind == "cold"]
        assert workers and set(workers) <= set(family), (workers, family)
        d.proc.send_signal(signal.SIGTERM)
        listener.wait_for("STOPPING=1")  # the drain has begun: the next signal is a second one
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(60) == 1, d.log()
        t.join(30)
        assert "error" in out and "reply" not in out, out
        assert "second SIGTERM: stopping now" in d.log()
        assert not os.path.exists(d.socket)
        # The cold worker is stopped; the fork server and resource tracker follow the daemon out.
        try:
            wait_until(lambda: not _alive(family), 15, "every child of the daemon to exit")
        except TimeoutError:
            pass
        assert _alive(family) == [], (_alive(family), d.log())
    finally:
        d.stop()
        listener.close()


def test_sighup_reloads_the_log_level(tmp_path):
    conf = tmp_path / "whisperd.conf"
    conf.write_text("[whisperd]\nlog_level = info\n")
    d = Daemon("--engine", "faster-whisper", config=str(conf))
    try:
        with Client(d.socket, timeout=60) as c:
            text = c.transcribe(FOX_FILES["wav"].read_bytes()).text
            assert text not in d.log()  # transcripts stay out of info logs
            conf.write_text("[whisperd]\nlog_level = debug\n")
            d.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while "reloaded: log level debug" not in d.log() and time.monotonic() < deadline:
                time.sleep(0.05)
            c.transcribe(FOX_FILES["wav"].read_bytes())
        assert "reloaded: log level debug" in d.log()
        assert text in d.log()  # debug logging shows it, as asked
    finally:
        d.stop()


def test_journald_lines_carry_priorities():
    d = Daemon("--engine", "faster-whisper", journald=True)
    try:
        with Client(d.socket, timeout=60) as c:
            c.transcribe(FOX_FILES["wav"].read_bytes())
            with pytest.raises(Exception):
                c.transcribe(b"garbage" * 10)
    finally:
        d.stop()
    lines = [l for l in d.log().splitlines() if l.strip()]
    assert lines and all(re.match(r"^<[0-7]>", l) for l in lines), lines
    assert any(l.startswith("<6>") and "ready in" in l for l in lines)
    # One info line per request: id, audio seconds, processing seconds, worker.
    assert any(re.match(r"<6>whisperd\.server: request \w+ done: [\d.]+ s audio in [\d.]+ s, model tiny\.en, worker hot", l)
               for l in lines), lines


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a group and switch users")
def test_socket_is_0660_and_refuses_users_outside_its_group():
    subprocess.run(["groupadd", "-f", "wdtestgrp"], check=True)
    if subprocess.run(["id", "wdtestusr"], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "-M", "-N", "-g", "nogroup", "-G", "wdtestgrp", "wdtestusr"], check=True)
    d = Daemon("--engine", "faster-whisper", "--socket-group", "wdtestgrp")
    try:
        os.chmod(d.dir, 0o755)  # let others reach the socket file itself
        st = os.stat(d.socket)
        assert stat.S_IMODE(st.st_mode) == 0o660
        import grp

        assert grp.getgrgid(st.st_gid).gr_name == "wdtestgrp"
        probe = ("import socket,sys; s=socket.socket(socket.AF_UNIX); "
                 "s.connect(sys.argv[1]); print('connected')")
        outsider = subprocess.run(["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-c", probe, d.socket],
                                  capture_output=True, text=True)
        assert outsider.returncode != 0 and "Permission denied" in outsider.stderr
        member = subprocess.run(["runuser", "-u", "wdtestusr", "--", "/usr/bin/python3", "-c", probe, d.socket],
                                capture_output=True, text=True)
        assert member.returncode == 0 and "connected" in member.stdout, member.stderr
    finally:
        d.stop()


def run_whisperd(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("WHISPERD_")}
    base.update(env or {})
    return subprocess.run([sys.executable, "-m", "whisperd", *args], capture_output=True, text=True,
                          env=base, cwd=ROOT, timeout=60)


def test_print_config_shows_values_and_sources(tmp_path):
    conf = tmp_path / "w.conf"
    conf.write_text("[whisperd]\nmodel = base\nbeam_size = 3\nqueue_size = 9\n")
    r = run_whisperd("--config", str(conf), "--print-config", "--beam-size", "2",
                     env={"WHISPERD_QUEUE_SIZE": "7"})
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert re.search(r"^model = base\s+# file:" + re.escape(str(conf)), out, re.M)
    assert re.search(r"^beam_size = 2\s+# cli$", out, re.M)
    assert re.search(r"^queue_size = 7\s+# env:WHISPERD_QUEUE_SIZE$", out, re.M)
    assert re.search(r"^engine = auto\s+# default$", out, re.M)


@pytest.mark.parametrize(
    "content, env, needle",
    [
        ("[whisperd]\nbeam_size = many\n", {}, "key 'beam_size' in [whisperd] of"),
        ("[whisperd]\nbeam_siz = 3\n", {}, "unknown key(s) beam_siz"),
        ("this is not ini", {}, "not valid INI"),
        ("", {"WHISPERD_ENGINE": "tensorflow"}, "environment variable WHISPERD_ENGINE"),
        ("[whisperd]\nlog_level = loud\n", {}, "key 'log_level'"),
    ],
)
def test_bad_config_names_the_key_and_the_file_and_exits_2(tmp_path, content, env, needle):
    conf = tmp_path / "bad.conf"
    conf.write_text(content)
    started = time.monotonic()
    r = run_whisperd("--config", str(conf), env=env)
    assert r.returncode == 2
    assert needle in r.stderr, r.stderr
    if "file" in needle or "key" in needle:
        assert str(conf) in r.stderr or "WHISPERD_" in r.stderr
    assert time.monotonic() - started < 20  # refused before any model loads


def test_missing_explicit_config_file_is_an_error():
    r = run_whisperd("--config", "/nonexistent/whisperd.conf")
    assert r.returncode == 2 and "/nonexistent/whisperd.conf does not exist" in r.stderr


def test_unknown_model_fails_start_with_a_clear_message():
    r = run_whisperd("--config", "/dev/null", "--model", "no-such-model", "--socket", "/tmp/x-unused.sock")
    assert r.returncode == 1
    assert "model 'no-such-model' is not installed" in r.stderr
