"""Several whisperd hosts on loopback, each a real daemon + shim, behind the real HAProxy.

A `Host` can be hurt the ways a real one is: `kill_daemon()` is a `kill -9` of the daemon (the
shim stays, answering 503), `terminate()` is what `systemctl stop whisperd` does (SIGTERM to the
shim, which drains, and once it has exited SIGTERM to the daemon: the shim unit is ordered
After= the daemon's, so systemd stops it first), `restart_daemon()` starts a new daemon on the
same socket. `Cluster` starts the hosts side by side and HAProxy in front of them.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from typing import TYPE_CHECKING

from testing.balancer import Backend, HAProxy
from testing.stack import Daemon, Shim, free_port, status

if TYPE_CHECKING:
    from whisperd.core.replies import DaemonStatus


class Host:
    def __init__(self, name: str, daemon_args: tuple[str, ...] = (), shim_args: tuple[str, ...] = (),
                 wait: bool = True) -> None:
        self.name = name
        self.daemon_args = daemon_args
        self.dir = tempfile.mkdtemp(prefix="wh-", dir="/tmp")
        self.socket = os.path.join(self.dir, "w.sock")
        self.agent_port = free_port()
        self.wyoming_port = free_port()
        self.daemon = Daemon(*daemon_args, socket=self.socket, wait=False)
        self.shim = Shim(self.socket, "--agent-port", str(self.agent_port), *shim_args)
        self.shim_exit: int | None = None
        if wait:
            self.daemon.wait_ready()

    @property
    def backend(self) -> Backend:
        return Backend(self.shim.port, self.agent_port, self.wyoming_port)

    def served(self) -> int:
        return status(self.socket).served

    def kill_daemon(self) -> None:
        self.daemon.proc.kill()
        self.daemon.proc.wait()

    def restart_daemon(self) -> None:
        self.daemon.stop()
        if os.path.exists(self.socket):
            os.unlink(self.socket)  # the killed daemon's; a new one binds afresh
        self.daemon = Daemon(*self.daemon_args, socket=self.socket)

    def terminate(self, timeout: float = 120.0) -> tuple[int, "DaemonStatus"]:
        """systemd's stop: the shim drains and exits first, then the daemon. Returns the shim's
        exit status and the daemon's status as it was once the shim had gone."""
        self.shim.proc.send_signal(signal.SIGTERM)
        self.shim_exit = self.shim.proc.wait(timeout)
        last = status(self.socket)
        self.daemon.stop()
        return self.shim_exit, last

    def stop(self) -> None:
        self.shim.stop()
        self.daemon.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Cluster:
    """`n` hosts (started side by side) behind HAProxy on the shipped config."""

    def __init__(self, n: int, daemon_args: tuple[str, ...] = (), shim_args: tuple[str, ...] = ()) -> None:
        self.hosts: list[Host] = []
        self.haproxy: HAProxy | None = None
        try:
            for i in range(n):
                self.hosts.append(Host(f"host{i + 1}", daemon_args, shim_args, wait=False))
            for host in self.hosts:
                host.daemon.wait_ready()
            backends = [h.backend for h in self.hosts]
            # A shipped config names three servers; fewer hosts leave the rest pointing at closed ports.
            while len(backends) < 3:
                backends.append(Backend(free_port(), free_port(), free_port()))
            self.haproxy = HAProxy(backends, http_port=free_port(), wyoming_port=free_port())
            for host in self.hosts:
                self.haproxy.wait_for(host.name, ("UP",), timeout=60)
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        assert self.haproxy is not None
        return self.haproxy.url

    def stop(self) -> None:
        if self.haproxy is not None:
            self.haproxy.stop()
        for host in self.hosts:
            host.stop()


def wait_until(predicate, timeout: float, what: str, step: float = 0.05) -> float:
    """Seconds until `predicate()` holds; TimeoutError naming `what` past `timeout`."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(step)
    return time.monotonic() - started
