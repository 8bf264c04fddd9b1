"""/health, HEAD /health and the agent-check port as a balancer sees them, and the shim's drain.

In-process: the shim's app against a daemon on the null engine (or a gated one that holds a
request for as long as the test needs), a daemon that never answers, or no daemon at all.
The drain's SIGTERM timer is the stack level's (tests/stack/test_shim_drain.py); here the
grace is ended by hand, so nothing waits for a guessed time.
"""

from __future__ import annotations

import asyncio
import dataclasses

import aiohttp
from aiohttp.test_utils import TestClient, TestServer

import shim.health
from shim.agent_check import AGENT
from shim.app import build_app
from shim.config import ShimConfig
from shim.drain import DRAIN
from shim.serve import _serve
from tests.service.inprocess_daemon import GatedEngine, in_process_daemon, until, wait_event
from tests.service.test_shim import ready_engine, shim_config, upload
from tests.service.test_shim_timeouts import SilentDaemon
from testing.stack import free_port


async def agent_line(port: int) -> bytes:
    """What HAProxy reads: everything up to the close (which must come after one line)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await asyncio.wait_for(reader.read(), 10)  # read() returns at EOF: the agent closed
    finally:
        writer.close()


def agent_config(socket: str, **settings) -> ShimConfig:
    return shim_config(socket, agent_port=free_port(), **settings)


async def health(web: TestClient) -> tuple[int, dict, dict]:
    r = await web.get("/health")
    return r.status, dict(r.headers), await r.json()


async def test_a_ready_daemon_is_200_and_the_agent_says_up_with_all_lanes_free():
    async with in_process_daemon() as d:
        app = build_app(agent_config(d.socket))
        async with TestClient(TestServer(app)) as web:
            code, headers, body = await health(web)
            assert (code, body["status"]) == (200, "ok") and "Retry-After" not in headers
            assert body["queue_size"] == 64 and body["decoded_audio_budget"] > 0  # the limits, reported
            head = await web.head("/health")
            assert head.status == 200 and await head.read() == b""
            assert await agent_line(app[AGENT].port) == b"up ready 100%\n"


async def test_no_daemon_is_503_not_ready_and_the_agent_says_down():
    app = build_app(agent_config("/tmp/no-such-whisperd.sock"))
    async with TestClient(TestServer(app)) as web:
        code, headers, body = await health(web)
        assert code == 503 and headers["Retry-After"] == "1"
        assert body["status"] == "unavailable" and body["error"]["code"] == "not_ready"
        assert (await web.head("/health")).status == 503
        line = await agent_line(app[AGENT].port)
        assert line.startswith(b"down#whisperd is not running") and line.endswith(b"\n")


async def test_a_daemon_that_does_not_answer_yet_is_503_within_the_status_timeout(monkeypatch):
    """Socket activation queues the status request while the model loads: no answer is 'not ready'."""
    monkeypatch.setattr(shim.health, "STATUS_TIMEOUT", 0.2)
    async with SilentDaemon() as silent:
        async with TestClient(TestServer(build_app(shim_config(silent.path)))) as web:
            code, _, body = await health(web)
    assert code == 503 and body["error"]["code"] == "not_ready" and "did not answer" in body["error"]["message"]
    assert silent.connections >= 1


async def test_a_full_queue_is_503_overloaded_until_a_request_finishes():
    engine = GatedEngine()
    async with in_process_daemon(engine, queue_size=1) as d:
        app = build_app(agent_config(d.socket))
        async with TestClient(TestServer(app)) as web:
            held = asyncio.ensure_future(web.post("/v1/audio/transcriptions", data=upload()))
            await wait_event(engine.started)
            code, headers, body = await health(web)
            assert code == 503 and headers["Retry-After"] == "1"
            assert (body["status"], body["error"]["code"], body["active"]) == ("saturated", "overloaded", 1)
            assert await agent_line(app[AGENT].port) == b"drain\n"
            engine.release.set()
            r = await held
            assert r.status == 200 and (await r.json())["text"] == "gated"
            await until(lambda: d.pool.active == 0)
            assert (await health(web))[0] == 200
            assert await agent_line(app[AGENT].port) == b"up ready 100%\n"  # `ready` undoes the drain


async def test_a_busy_lane_lowers_the_agents_weight():
    engine = GatedEngine()
    async with in_process_daemon(engine) as d:  # one hot slot, no cold workers: one lane
        app = build_app(agent_config(d.socket, connections=4))
        async with TestClient(TestServer(app)) as web:
            held = asyncio.ensure_future(web.post("/v1/audio/transcriptions", data=upload()))
            await wait_event(engine.started)
            assert await agent_line(app[AGENT].port) == b"up ready 1%\n"  # still in, last in line
            engine.release.set()
            assert (await held).status == 200


async def test_draining_says_503_at_once_yet_serves_new_requests_until_the_listener_closes():
    async with in_process_daemon(ready_engine()) as d:
        app = build_app(agent_config(d.socket))
        async with TestClient(TestServer(app)) as web:
            app[DRAIN].begin(grace=3600)  # the grace is ended by hand below, never waited for
            code, headers, body = await health(web)
            assert code == 503 and headers["Retry-After"] == "1"
            assert (body["status"], body["error"]["code"]) == ("draining", "shutting_down")
            assert await agent_line(app[AGENT].port) == b"drain\n"
            r = await web.post("/v1/audio/transcriptions", data=upload())  # what the balancer still sends
            assert r.status == 200 and (await r.json())["text"] == "gated"
            assert r.headers["Connection"] == "close"  # no idle connection left for the close to cut
            app[DRAIN].stop()


async def test_after_the_grace_the_listener_closes_and_requests_in_flight_still_finish():
    """The real serve loop: grace over → no new connections; the held requests are answered."""
    engine = GatedEngine()
    async with in_process_daemon(engine) as d:
        config = dataclasses.replace(shim_config(d.socket), port=free_port())
        app = build_app(config)
        url = f"http://127.0.0.1:{config.port}"
        serving = asyncio.ensure_future(_serve(app, "127.0.0.1", config.port, 100, 3600,
                                               shutdown_timeout=30, handler_cancellation=True))
        async with aiohttp.ClientSession() as session:
            await until(lambda: _listening(config.port), timeout=30)
            held = asyncio.ensure_future(session.post(url + "/v1/audio/transcriptions", data=upload()))
            await wait_event(engine.started)
            app[DRAIN].begin(grace=3600)
            app[DRAIN].stop()  # the grace's end
            await until(lambda: not _listening(config.port), timeout=30)
            engine.release.set()
            r = await asyncio.wait_for(held, 30)
            assert r.status == 200 and (await r.json())["text"] == "gated"
        await asyncio.wait_for(serving, 30)
    assert d.counters.get("dropped_running", 0) == 0


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def test_health_needs_no_key_and_tells_strangers_only_the_word():
    async with in_process_daemon() as d:
        async with TestClient(TestServer(build_app(shim_config(d.socket, api_key="k")))) as web:
            r = await web.get("/health")
            assert r.status == 200 and await r.json() == {"status": "ok"}
            with_key = await web.get("/health", headers={"Authorization": "Bearer k"})
            assert "queue_size" in await with_key.json()
