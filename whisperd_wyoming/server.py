"""The listener: `wyoming.server.AsyncServer` on the configured URI, one handler per connection.

SIGTERM and SIGINT stop it: every connection is closed (its live stream with it),
the zeroconf record is withdrawn, then the process exits.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from whisperd_wyoming.config import WyomingConfig
from whisperd_wyoming.discovery import Advertisement

log = logging.getLogger("whisperd.wyoming")

DAEMON_CHECK_S = 5.0  # how long the start-up check waits for the daemon's pong
STOP_GRACE_S = 5.0  # for the closed connections' handlers to finish


async def daemon_answers(socket_path: str) -> bool:
    from whisperd.client import AsyncClient
    from whisperd.core.errors import WhisperdError

    try:
        async with asyncio.timeout(DAEMON_CHECK_S):
            async with AsyncClient(socket_path, size=1) as client:
                return await client.ping()
    except (WhisperdError, OSError, TimeoutError):
        return False


async def serve(config: WyomingConfig) -> int:
    from wyoming.server import AsyncServer

    from whisperd_wyoming.handler import WyomingHandler

    server = AsyncServer.from_uri(config.uri)
    try:
        await server.start(lambda reader, writer: WyomingHandler(reader, writer, config))
    except OSError as exc:
        log.error("cannot listen on %s: %s", config.uri, exc.strerror or exc)
        return 1
    log.info("listening on %s, daemon socket %s", config.uri, config.socket)
    if not await daemon_answers(config.socket):
        log.warning("whisperd does not answer on %s yet: clients get an error event until it does",
                    config.socket)
    advertisement = Advertisement(config.zeroconf, config.listen) if config.zeroconf else None
    try:
        if advertisement is not None:
            address = await advertisement.start()
            log.info("zeroconf: advertising %r (%s) at %s:%d", config.zeroconf, "_wyoming._tcp", address,
                     config.listen.port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("stopping")
    finally:
        await server.stop()
        if advertisement is not None:
            await advertisement.stop()
        rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if rest:
            await asyncio.wait(rest, timeout=STOP_GRACE_S)
    return 0
