"""The HTTP listener: aiohttp's `run_app`, plus a cap on open connections.

aiohttp bounds a request's header block by its keep-alive timer (an unfinished
block is dropped when it runs out) but not the number of connections: a
thousand clients that send half their headers and stall would hold the shim at
its file limit, and `/health` would fail. So at most `max_connections` are open
(fewer when the file limit is lower). A new connection beyond them closes the
oldest one that is waiting for a request (idle, or stalled inside its headers -
aiohttp's own test for "idle"), so stalled clients never shut out a real one;
only when every connection has a request in flight is the new one refused, with
a 503 in OpenAI's shape.
"""

from __future__ import annotations

import asyncio
import json
import resource
from contextlib import suppress
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from shim.drain import DRAIN
from shim.errors import HTTPError, error_dict

FD_RESERVE = 32  # descriptors for the shim itself (logs, the listener), beyond its daemon connections
BACKLOG = 128  # the listen backlog, and so how many connections one accept burst may take at once


def connection_cap(wanted: int, daemon_connections: int) -> int:
    """`max_connections`, lowered to what the file limit leaves (each request may also hold a socket
    to the daemon)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    # Room for one whole accept burst beyond the cap: the displaced connections close only after it.
    return max(1, min(wanted, soft - daemon_connections - FD_RESERVE - BACKLOG))


def _refusal(limit: int) -> bytes:
    body = json.dumps(error_dict(HTTPError(
        "overloaded", f"the server has {limit} connections open, each with a request in flight "
        "(max_connections); try again shortly"))).encode()
    head = ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
            f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


class _Refuse(asyncio.Protocol):
    """Answers 503 at once and closes: a refused connection costs no parser and no request."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.answer)  # type: ignore[attr-defined]
        transport.close()


def _waiting(handler: RequestHandler) -> bool:
    # What aiohttp's keep-alive timer itself takes for idle: the handler awaits its next message.
    waiter = getattr(handler, "_waiter", None)
    return handler.transport is not None and waiter is not None and not waiter.done()


class ConnectionCap:
    """The protocol factory the listener uses in place of aiohttp's `web.Server`."""

    def __init__(self, server: web.Server, limit: int) -> None:
        self.server = server
        self.limit = limit
        self.answer = _refusal(limit)
        self.displaced = 0
        self.refused = 0

    def __call__(self) -> asyncio.BaseProtocol:
        open_now = [h for h in self.server.connections if h.transport is not None]
        if len(open_now) >= self.limit:
            oldest_idle = next((h for h in open_now if _waiting(h)), None)
            if oldest_idle is None:
                self.refused += 1
                return _Refuse(self.answer)
            oldest_idle.force_close()
            self.displaced += 1
        return self.server()


class CappedSite(web.TCPSite):
    """`web.TCPSite` listening through a `ConnectionCap`."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, *, limit: int, **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self.limit = limit
        self.cap: ConnectionCap | None = None

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        self.cap = ConnectionCap(server, self.limit)
        self._server = await asyncio.get_running_loop().create_server(
            self.cap, self._host, self._port, backlog=BACKLOG,
            reuse_address=self._reuse_address, reuse_port=self._reuse_port)
        self._bound_port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port


async def _serve(app: web.Application, host: str, port: int, limit: int, drain_grace: float,
                 **runner_args: Any) -> None:
    # Our own signal handlers (shim/drain.py): SIGTERM drains, SIGINT stops.
    runner = web.AppRunner(app, handle_signals=False, **runner_args)
    await runner.setup()
    try:
        await CappedSite(runner, host, port, limit=limit).start()
        drain = app[DRAIN]
        drain.install_signals(drain_grace)
        try:
            await drain.stop_now.wait()
        finally:
            drain.remove_signals()
    finally:
        await runner.cleanup()  # closes the listener; requests in flight finish within shutdown_timeout


def run(app: web.Application, host: str, port: int, limit: int, *, drain_grace: float = 0.0,
        **runner_args: Any) -> None:
    """Serve until SIGINT, or SIGTERM and `drain_grace` (shim/drain.py); the rest as `web.run_app`."""
    loop = asyncio.new_event_loop()
    main = loop.create_task(_serve(app, host, port, limit, drain_grace, **runner_args))
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main)
    except KeyboardInterrupt:  # a SIGINT before the handlers were in place
        pass
    finally:
        try:
            if not main.done():
                main.cancel()
                with suppress(asyncio.CancelledError):
                    loop.run_until_complete(main)
        finally:
            rest = asyncio.all_tasks(loop)
            for task in rest:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
