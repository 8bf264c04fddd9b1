"""The real HAProxy in front of whisperd hosts, on the shipped config with only addresses changed.

`packaging/haproxy/whisperd.cfg` is read as it is; `render_config` rewrites its bind lines,
its server lines (and adds each server's own agent-port, since loopback hosts cannot share
port 5001), the stats socket path and the log target - nothing else - so the tests prove the
file operators copy. `HAProxy` runs `haproxy -db` as a child and reads server states from
its stats socket.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from testing.stack import ROOT

SHIPPED_CONFIG = ROOT / "packaging" / "haproxy" / "whisperd.cfg"


class HAProxyMissing(RuntimeError):
    """No `haproxy` program: the scale tests need Debian's haproxy (apt-get install haproxy)."""


@dataclass(frozen=True)
class Backend:
    """Where one host listens on loopback."""

    http_port: int
    agent_port: int
    wyoming_port: int


def haproxy_program() -> str:
    path = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)
    if path is None:
        raise HAProxyMissing("haproxy is not installed: `apt-get install haproxy` (Debian's 2.6 is what "
                             "packaging/haproxy/whisperd.cfg is written for)")
    return path


def render_config(text: str, *, http_port: int, wyoming_port: int, backends: list[Backend],
                  stats_socket: str) -> str:
    """The shipped config with its addresses and ports replaced by loopback ones."""
    out = []
    servers = {"whisperd_hosts": iter(backends), "whisperd_wyoming_hosts": iter(backends)}
    section = None
    for line in text.splitlines():
        head = line.split()
        if head and head[0] in ("frontend", "backend", "global", "defaults", "listen"):
            section = head[1] if len(head) > 1 else head[0]
        if head[:1] == ["bind"]:
            port = http_port if section == "whisperd_http" else wyoming_port
            line = re.sub(r"bind \S+", f"bind 127.0.0.1:{port}", line)
        elif head[:1] == ["server"] and section in servers:
            b = next(servers[section])
            if section == "whisperd_hosts":
                line = re.sub(r"\S+:5000", f"127.0.0.1:{b.http_port}", line) + f" agent-port {b.agent_port}"
            else:
                line = re.sub(r"\S+:10300", f"127.0.0.1:{b.wyoming_port}", line) + f" port {b.http_port}"
        elif head[:2] == ["stats", "socket"]:
            line = re.sub(r"socket \S+", f"socket {stats_socket}", line)
        elif head[:1] == ["log"] and section == "global":
            line = "    log stderr format raw local0 info"
        out.append(line)
    for name, rest in servers.items():
        if next(rest, None) is not None:
            raise ValueError(f"the shipped config has fewer servers in {name} than the {len(backends)} hosts")
    return "\n".join(out) + "\n"


def server_count(text: str) -> int:
    section, n = None, 0
    for line in text.splitlines():
        head = line.split()
        if head[:1] == ["backend"]:
            section = head[1]
        elif head[:1] == ["server"] and section == "whisperd_hosts":
            n += 1
    return n


class HAProxy:
    """`haproxy -db` on the rendered shipped config; `states()` from its stats socket."""

    def __init__(self, backends: list[Backend], http_port: int, wyoming_port: int) -> None:
        program = haproxy_program()
        self.dir = tempfile.mkdtemp(prefix="hap-", dir="/tmp")
        self.stats = os.path.join(self.dir, "stats.sock")
        self.config_path = os.path.join(self.dir, "haproxy.cfg")
        text = SHIPPED_CONFIG.read_text()
        Path(self.config_path).write_text(render_config(
            text, http_port=http_port, wyoming_port=wyoming_port, backends=backends, stats_socket=self.stats))
        self.url = f"http://127.0.0.1:{http_port}"
        self.wyoming_port = wyoming_port
        self.log_path = os.path.join(self.dir, "haproxy.log")
        self._log = open(self.log_path, "wb")
        check = subprocess.run([program, "-c", "-f", self.config_path], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy refused the rendered config:\n{check.stdout}{check.stderr}")
        self.proc = subprocess.Popen([program, "-db", "-f", self.config_path], stdout=self._log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.stats):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"haproxy did not start:\n{self.log()}")
            time.sleep(0.05)

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(self.stats)
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def rows(self, backend: str = "whisperd_hosts") -> dict[str, dict[str, str]]:
        """`show stat` for one backend's servers, by server name (status, weight, agent_status, ...)."""
        text = self.command("show stat").lstrip("# ")
        return {r["svname"]: r for r in csv.DictReader(io.StringIO(text))
                if r["pxname"] == backend and r["svname"] not in ("FRONTEND", "BACKEND")}

    def states(self, backend: str = "whisperd_hosts") -> dict[str, str]:
        """Server name → its status word: UP, DOWN, DRAIN, `UP 1/2` (going down), ..."""
        return {name: r["status"] for name, r in self.rows(backend).items()}

    def wait_for(self, server: str, wanted: tuple[str, ...], timeout: float,
                 backend: str = "whisperd_hosts") -> float:
        """Seconds until `server`'s status is one of `wanted` (`DOWN (agent)` counts as DOWN; `UP 1/2`,
        up but failing, is not UP); TimeoutError with all states past `timeout`."""
        started = time.monotonic()
        while True:
            state = self.states(backend).get(server, "?")
            if state.split(" (")[0] in wanted:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{server} still {state!r} after {timeout} s (wanted {wanted}); "
                                   f"all: {self.states(backend)}\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def log(self) -> str:
        self._log.flush()
        return Path(self.log_path).read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
