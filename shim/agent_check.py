"""HAProxy's agent-check port (`agent_port`, off by default): one line, then close.

HAProxy connects, reads up to the first newline and acts on its words
(`configuration.txt`, "agent-check"): `up ready 75%` (in rotation, weight 75 % of the
configured one: the share of free lanes), `drain` (finish, take nothing new), or
`down#reason`. The line comes from the same verdict as `/health` (`shim/health.py`), so
the two never disagree. Whatever the client sends is not read: HAProxy's `agent-send`
is not needed, and a stranger's bytes cost nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator, Awaitable, Callable

from aiohttp import web

from shim.health import Health, agent_reply

log = logging.getLogger("shim")

ANSWER_TIMEOUT = 5.0  # a client that does not read its line is dropped


class AgentCheck:
    """A TCP listener that answers every connection with the agent line for `verdict()`."""

    def __init__(self, host: str, port: int, verdict: Callable[[], Awaitable[Health]]) -> None:
        self.host = host
        self.port = port
        self.verdict = verdict
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._answer, self.host, self.port)
        self.port = self.server.sockets[0].getsockname()[1]  # the real one when 0 was asked
        log.info("agent-check on %s:%d", self.host, self.port)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = agent_reply(await self.verdict())
            writer.write(line.encode("ascii", "replace"))
            await asyncio.wait_for(writer.drain(), ANSWER_TIMEOUT)
        except (ConnectionError, asyncio.TimeoutError):
            pass
        finally:
            writer.close()


def agent_context(host: str, port: int, verdict: Callable[[], Awaitable[Health]]
                  ) -> Callable[[web.Application], AsyncIterator[None]]:
    """An aiohttp cleanup context: the agent listens while the app runs."""

    async def serving(app: web.Application) -> AsyncIterator[None]:
        agent = AgentCheck(host, port, verdict)
        await agent.start()
        app[AGENT] = agent
        yield
        await agent.close()

    return serving


AGENT = web.AppKey("agent_check", AgentCheck)
