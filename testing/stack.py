"""Start the real programs - `whisperd`, `whisperd-shim`, `whisperd-wyoming` - as child processes.

Sockets live in short /tmp paths (AF_UNIX paths are limited to 108 bytes).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache"  # converted checkpoints and the assembled base model, shared across runs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHISPERD_", "NOTIFY_SOCKET", "LISTEN_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def status(sock: str):
    """The daemon's typed status over its socket."""
    from whisperd.client import Client

    with Client(sock, timeout=30) as c:
        return c.status()


def drops(sock: str) -> int:
    """Requests the daemon dropped because their client went away (queued or running)."""
    counters = status(sock).counters
    return counters.get("dropped_queued", 0) + counters.get("dropped_running", 0)


class Daemon:
    """A real `whisperd` process on a temporary socket."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, wait: bool = True,
                 config: str = "/dev/null", journald: bool = False, source: Path = ROOT,
                 socket: str | None = None, **popen: object) -> None:
        # `source`: the checkout whose `whisperd` runs (`python -m` puts it first on sys.path);
        # the bench runs an older commit's daemon beside this one. `socket`: a path that outlives
        # this process, for a restart in the same place (the shim in front keeps its socket).
        self.dir = tempfile.mkdtemp(prefix="wd-", dir="/tmp")
        self.socket = socket or os.path.join(self.dir, "w.sock")
        self.log_path = os.path.join(self.dir, "daemon.log")
        self._log = open(self.log_path, "wb")
        env = dict(env or {})
        if journald:  # what systemd sets when stderr is connected to the journal
            st = os.fstat(self._log.fileno())
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        cmd = [sys.executable, "-m", "whisperd", "--config", config, "--socket", self.socket,
               "--cache-dir", str(CACHE), *args]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=_env(env), cwd=source,
                                     **popen)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 120.0) -> None:
        from whisperd.client import Client
        from whisperd.core.errors import WhisperdError

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"whisperd exited with {self.proc.returncode}:\n{self.log()}")
            if os.path.exists(self.socket):
                try:
                    with Client(self.socket, timeout=5) as c:
                        if c.status().ready:
                            return
                except (WhisperdError, OSError):
                    pass
            time.sleep(0.05)
        raise TimeoutError(f"whisperd not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        if self._log.closed:
            return self._final_log  # kept after stop() removed the folder
        self._log.flush()
        return Path(self.log_path).read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self._log.closed:
            self._final_log = self.log()
            self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.proc.returncode


class _TcpProgram:
    """A real program of ours listening on a TCP port on loopback, its output in a log file."""

    name = ""
    stop_signal = signal.SIGTERM

    def _start(self, cmd: list[str], port: int, env: dict[str, str] | None, **popen: object) -> None:
        self.host, self.port = "127.0.0.1", port
        self.log_file = tempfile.NamedTemporaryFile(prefix=f"{self.name}-", suffix=".log", dir="/tmp", delete=False)
        self.proc = subprocess.Popen(cmd, stdout=self.log_file, stderr=subprocess.STDOUT, env=_env(env), cwd=ROOT,
                                     **popen)
        self.wait_listening()

    def wait_listening(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"{self.name} not listening after {timeout} s")

    def log(self) -> str:
        self.log_file.flush()
        return Path(self.log_file.name).read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()
        os.unlink(self.log_file.name)
        return self.proc.returncode


class Shim(_TcpProgram):
    """A real `whisperd-shim` process on a free port."""

    name = "whisperd-shim"
    stop_signal = signal.SIGINT

    def __init__(self, socket_path: str, *args: str, env: dict[str, str] | None = None, **popen: object) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self._start([sys.executable, "-m", "shim", "--config", "/dev/null", "--socket", socket_path,
                     "--port", str(port), *args], port, env, **popen)

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()


class WyomingFront(_TcpProgram):
    """A real `whisperd-wyoming` process on a free port (of `listen`: 127.0.0.1, or 0.0.0.0 for every address)."""

    name = "whisperd-wyoming"

    def __init__(self, socket_path: str, *args: str, env: dict[str, str] | None = None,
                 listen: str = "127.0.0.1", port: int | None = None) -> None:
        port = port or free_port()
        self.uri = f"tcp://{listen}:{port}"
        self._start([sys.executable, "-m", "whisperd_wyoming", "--config", "/dev/null", "--socket", socket_path,
                     "--uri", self.uri, *args], port, env)


class Stack:
    def __init__(self, *daemon_args: str, shim_args: tuple[str, ...] = ()) -> None:
        self.daemon = Daemon(*daemon_args)
        self.shim = Shim(self.daemon.socket, *shim_args)
        self.url = self.shim.url

    def stop(self) -> None:
        self.shim.stop()
        self.daemon.stop()
