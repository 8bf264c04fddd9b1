"""The systemd service protocol: notify, watchdog, socket activation.

Stdlib only, and every function is a quiet no-op outside systemd (the variables
it reads are simply unset), so the daemon runs the same from a terminal.

- ``notify`` speaks sd_notify(3): newline-separated ``KEY=value`` lines in one
  datagram to ``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract namespace).
- ``Watchdog`` pings ``WATCHDOG=1`` from the asyncio loop itself, at half of
  ``WatchdogSec=``; a blocked loop stops the pings and systemd restarts us.
- ``listen_fds`` is sd_listen_fds(3): inherited sockets start at fd 3.

Whether stderr is the journal is ``whisperd.core.logs.under_journald``: the
shim logs there too, and the shim may not import the daemon.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import socket

log = logging.getLogger("whisperd.systemd")

# sd_listen_fds(3): passed descriptors always start right after stdio.
SD_LISTEN_FDS_START = 3


# -- sd_notify ---------------------------------------------------------------


def _notify_address() -> str | None:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return None
    if addr.startswith("@"):
        return "\0" + addr[1:]  # abstract namespace
    if addr.startswith("/"):
        return addr
    # vsock: and relative paths are not for a local daemon; ignore, like a no-op.
    log.debug("ignoring unsupported NOTIFY_SOCKET %r", addr)
    return None


def notify(*lines: str) -> bool:
    """Send ``KEY=value`` lines to systemd; True when the datagram was sent.

    Never raises: a lost notification must not take the daemon down.
    """
    addr = _notify_address()
    if addr is None or not lines:
        return False
    payload = "\n".join(lines).encode("utf-8", "replace")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(payload, addr)
    except OSError as exc:
        log.debug("sd_notify to %r failed: %s", os.environ.get("NOTIFY_SOCKET"), exc)
        return False
    return True


def _status_line(text: str) -> str:
    # A newline would start a new KEY=value assignment in the datagram.
    return "STATUS=" + " ".join(str(text).splitlines())


def ready(status: str | None = None) -> bool:
    """READY=1: the model is loaded and the socket listens."""
    lines = ["READY=1"]
    if status is not None:
        lines.append(_status_line(status))
    return notify(*lines)


def status(text: str) -> bool:
    """A one-line state a person reads in ``systemctl status``."""
    return notify(_status_line(text))


def stopping(status: str | None = None) -> bool:
    """STOPPING=1: shutdown has begun (drain, then exit)."""
    lines = ["STOPPING=1"]
    if status is not None:
        lines.append(_status_line(status))
    return notify(*lines)


def watchdog() -> bool:
    """One WATCHDOG=1 keep-alive ping."""
    return notify("WATCHDOG=1")


# -- watchdog ------------------------------------------------------------------


def watchdog_interval() -> float | None:
    """Seconds between pings (half of WatchdogSec=), or None when not watched.

    Like sd_watchdog_enabled(3): WATCHDOG_PID, when set, must be this process,
    so a child that inherited the environment does not ping for its parent.
    """
    usec_text = os.environ.get("WATCHDOG_USEC")
    if not usec_text:
        return None
    pid_text = os.environ.get("WATCHDOG_PID")
    try:
        usec = int(usec_text)
        if pid_text and int(pid_text) != os.getpid():
            return None
    except ValueError:
        log.warning("ignoring malformed WATCHDOG_USEC=%r WATCHDOG_PID=%r", usec_text, pid_text)
        return None
    if usec <= 0:
        return None
    return usec / 2 / 1_000_000


class Watchdog:
    """Pings WATCHDOG=1 from the loop that does the work, until stopped.

    If that loop blocks, the task cannot run, the pings stop and systemd
    restarts the service. Off (start() returns False) when not watched.
    """

    def __init__(self) -> None:
        self.interval = watchdog_interval()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> bool:
        """Start pinging on the running loop; False when the watchdog is off."""
        if self.interval is None:
            return False
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._ping(self.interval), name="systemd-watchdog")
        return True

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    @staticmethod
    async def _ping(interval: float) -> None:
        while True:
            watchdog()
            await asyncio.sleep(interval)


# -- socket activation -------------------------------------------------------------


def listen_fds() -> list[socket.socket]:
    """Sockets passed by systemd socket activation, fd 3 onwards; [] if none.

    As sd_listen_fds(3): only when LISTEN_PID is this process; each fd gets
    FD_CLOEXEC so cold workers do not inherit the listener; the variables are
    removed so our children do not think the sockets are theirs.
    """
    pid_text = os.environ.get("LISTEN_PID")
    fds_text = os.environ.get("LISTEN_FDS")
    try:
        if not pid_text or not fds_text:
            return []
        try:
            pid, count = int(pid_text), int(fds_text)
        except ValueError:
            log.warning("ignoring malformed LISTEN_PID=%r LISTEN_FDS=%r", pid_text, fds_text)
            return []
        if pid != os.getpid() or count <= 0:
            return []
        socks: list[socket.socket] = []
        for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count):
            flags = fcntl.fcntl(fd, fcntl.F_GETFD)
            fcntl.fcntl(fd, fcntl.F_SETFD, flags | fcntl.FD_CLOEXEC)
            # fileno= asks the kernel for family and type, so a unix or tcp
            # listener both come back right.
            socks.append(socket.socket(fileno=fd))
        return socks
    finally:
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(name, None)
