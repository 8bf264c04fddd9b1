"""The one line `systemctl status` shows while the daemon serves (systemd's STATUS=)."""

from __future__ import annotations

import asyncio
import os
from typing import Callable

from whisperd.core.replies import DaemonStatus


def status_line(s: DaemonStatus) -> str:
    """The daemon's status reply, as one line a person reads."""
    cold = s.workers.get("cold", 0)
    return (f"ready: model {s.model}, engine {s.engine} ({s.compute_type}), device {s.device}, "
            f"queue {s.queue}, running {s.running}, workers {1 + cold} "
            f"(cold {cold}, loading {s.loading}), spawns {s.spawns}, "
            f"crashes {s.crashes}, served {s.served}")


def throttled_status(make_line: Callable[[], str], interval: float = 0.25) -> Callable[[], None]:
    """Refresh systemd's STATUS= at most every `interval`; nothing at all outside systemd.

    Several events per request ask for a refresh; building and sending the line
    each time cost 5-7 % of the daemon's time at its ceiling (profiled).
    """
    from whisperd.daemon import systemd

    if not os.environ.get("NOTIFY_SOCKET"):
        return lambda: None
    loop = asyncio.get_running_loop()
    pending = False

    def send() -> None:
        nonlocal pending
        pending = False
        systemd.status(make_line())

    def request() -> None:
        nonlocal pending
        if not pending:
            pending = True
            loop.call_later(interval, send)

    return request
