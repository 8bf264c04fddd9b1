"""SIGTERM as a balancer needs it: leave rotation first, stop taking work later.

A balancer learns that a host is going only from its next health checks, so a shim
that closed its listener on SIGTERM would refuse the requests the balancer still
sends meanwhile. Instead:

    SIGTERM ──▶ /health 503, agent-check `drain`   (the balancer takes it out)
                still accepting and serving          for drain_grace seconds
            ──▶ listener closed, idle connections closed
                requests in flight finish            within drain_timeout seconds
            ──▶ exit 0

SIGINT (Ctrl-C at a terminal) and a second SIGTERM skip the grace: a person or a
supervisor that asks twice wants it to stop now. While draining, every answer
carries `Connection: close`, so the balancer keeps no idle connection that the
end of the grace would cut under a request it is about to send.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from aiohttp import web

log = logging.getLogger("shim")


class Drain:
    """The shim's own "stopping" flag, and the moment the listener should close."""

    def __init__(self) -> None:
        self.since: float | None = None  # monotonic time of the SIGTERM
        self.stop_now = asyncio.Event()  # set when the listener should close

    @property
    def draining(self) -> bool:
        return self.since is not None

    def begin(self, grace: float) -> None:
        """Start draining: report 503 now, close the listener after `grace` seconds."""
        if self.draining:  # asked twice: stop now
            self.stop_now.set()
            return
        self.since = time.monotonic()
        log.info("SIGTERM: reporting 503 on /health, serving for %g s more (drain_grace), then stopping", grace)
        asyncio.get_running_loop().call_later(grace, self.stop_now.set)

    def stop(self) -> None:
        self.stop_now.set()

    def install_signals(self, grace: float) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.begin, grace)
        loop.add_signal_handler(signal.SIGINT, self.stop)

    def remove_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_signal_handler(signal.SIGTERM)
        loop.remove_signal_handler(signal.SIGINT)

    async def on_response_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        if self.draining:
            # The hook runs after aiohttp wrote its Connection header: set both.
            response.force_close()
            response.headers["Connection"] = "close"


DRAIN = web.AppKey("drain", Drain)
