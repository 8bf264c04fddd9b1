"""The daemon's Server and Pool in-process on the null engine, through the real AsyncClient.

Typed round trips, a transcription, what a broken frame gets, a client that hangs
up mid-request, a drain; all on a real Unix socket, with no model and no sleeps
standing in for synchronisation.
"""

from __future__ import annotations

import asyncio
import gc
import json

import pytest

from tests.service.inprocess_daemon import (
    GatedEngine,
    in_process_daemon,
    until,
    wait_event,
    wav_bytes,
)
from whisperd.client import AsyncClient, Client
from whisperd.core import protocol
from whisperd.core.errors import (
    ModelNotFound,
    NotReady,
    ShuttingDown,
    UnsupportedForModel,
)
from whisperd.core.replies import DaemonStatus, LaneStatus, ModelEntry, TranscribeResult

WAV = wav_bytes(1.0)

# Every key of the v1 status object, as the daemon sent it before the replies were typed,
# plus the pool's counters.
V1_STATUS_KEYS = {"status", "version", "model", "engine", "device", "compute_type", "queue", "running", "workers",
                  "hot_slots", "loading", "lanes", "spawns", "crashes", "spawn_to_ready_s", "counters", "served",
                  "uptime"}


async def raw(path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_unix_connection(path)


async def reply(reader: asyncio.StreamReader) -> dict | None:
    """The next reply frame, or None when the daemon closed the connection."""
    try:
        return protocol.parse_reply(await protocol.read_frame(reader, protocol.MAX_REPLY))
    except EOFError:
        return None


async def test_ping_status_and_models_are_typed():
    async with in_process_daemon() as d, AsyncClient(d.socket) as c:
        assert await c.ping() is True
        status = await c.status()
        assert isinstance(status, DaemonStatus)
        assert (status.status, status.model, status.engine, status.device) == ("ready", "tiny.en", "null", "cpu")
        assert status.ready and status.hot_slots == 1 and status.workers == {"hot": 1, "cold": 0}
        assert status.lanes == (LaneStatus("hot", "hot", "tiny.en", "idle", 0),)
        assert status.served == 0 and status.queue == 0 and status.running == 0
        # The in-process daemon's models are folders of its own, outside any models folder: "path".
        assert await c.models() == [
            ModelEntry("tiny.en", loaded=True, multilingual=False, default=True, source="path", size_bytes=0),
            ModelEntry("base", loaded=False, multilingual=True, default=False, source="path", size_bytes=0)]


async def test_status_on_the_wire_keeps_the_v1_keys():
    async with in_process_daemon() as d:
        reader, writer = await raw(d.socket)
        writer.write(protocol.Request(op="status", id="s-1").to_frame())
        frame = await reply(reader)
        writer.close()
    assert (frame["type"], frame["id"]) == ("result", "s-1")
    assert set(frame["result"]) == V1_STATUS_KEYS | {"windowed", "decoded_audio_reserved", "live", "active", "queue_size",
                                                   "decoded_audio_budget", "request_reserve", "max_cold_workers"}  # v1 kept, additions only
    assert DaemonStatus.from_dict(frame["result"]).to_dict() == frame["result"]


async def test_a_transcription_is_a_typed_result():
    async with in_process_daemon() as d, AsyncClient(d.socket) as c:
        result = await c.transcribe(WAV, model="whisper-1", language="English")
        assert isinstance(result, TranscribeResult)
        assert (result.worker, result.model, result.text) == ("hot", "tiny.en", "")
        assert result.transcript.duration == pytest.approx(1.0)
        assert result.transcript.language == "en"  # the null engine echoes the normalised language
        assert len(result.id) == 16 and result.processing_seconds >= 0
        assert (await c.status()).served == 1


async def test_the_blocking_client_is_typed_too():
    async with in_process_daemon() as d:
        def run() -> tuple:
            with Client(d.socket, timeout=10) as c:
                return c.ping(), c.status(), c.models(), c.transcribe(WAV, word_timestamps=True)

        pong, status, models, result = await asyncio.to_thread(run)
    assert pong is True and status.ready and [m.id for m in models] == ["tiny.en", "base"]
    assert isinstance(result, TranscribeResult) and result.worker == "hot"


async def test_a_misspelled_option_is_pythons_own_type_error():
    with pytest.raises(TypeError, match="langauge"):
        await AsyncClient("/nonexistent.sock").transcribe(WAV, langauge="en")
    with pytest.raises(TypeError, match="word_timestamp"):
        Client("/nonexistent.sock").transcribe(WAV, word_timestamp=True)


async def test_a_refusal_keeps_the_connection():
    async with in_process_daemon() as d:
        reader, writer = await raw(d.socket)
        for rid, model, options, code, param in (
            ("r-1", "large-v9", {}, "model_not_found", "model"),
            ("r-2", None, {"task": "translate"}, "unsupported_for_model", "model"),
            ("r-3", "whisper-1", {"language": "de"}, "unsupported_for_model", "language"),
        ):
            request = protocol.Request(op="transcribe", id=rid, model=model, audio_size=len(WAV),
                                       options=protocol.TranscribeOptions(**options))
            writer.write(request.to_frame() + protocol.frame(WAV))
            frame = await reply(reader)
            assert (frame["type"], frame["id"], frame["error"]["code"], frame["error"]["param"]) == (
                "error", rid, code, param)
        writer.write(protocol.Request(op="transcribe", id="r-4", audio_size=len(WAV)).to_frame()
                     + protocol.frame(WAV))
        frame = await reply(reader)
        writer.close()
        assert (frame["type"], frame["id"], frame["worker"]) == ("result", "r-4", "hot")
    # The client raises them as typed errors.
    async with in_process_daemon() as d, AsyncClient(d.socket) as c:
        with pytest.raises(ModelNotFound):
            await c.transcribe(WAV, model="large-v9")
        with pytest.raises(UnsupportedForModel):
            await c.transcribe(WAV, language="de")


@pytest.mark.parametrize("wire, code", [
    (protocol.frame(b"\x00garbage\xff"), "protocol_error"),
    (protocol.frame(b'{"v": 9, "op": "status"}'), "unsupported_version"),
    (protocol.frame(json.dumps({"v": 1, "op": "transcribe", "id": "t", "audio_size": 4,
                                "options": {"beam_size": 99}}).encode()), "invalid_parameter"),
    (protocol.Request(op="transcribe", id="t", audio_size=10).to_frame() + protocol.frame(b"y" * 20),
     "protocol_error"),
])
async def test_a_bad_frame_gets_its_error_frame_then_the_connection_closes(wire, code):
    async with in_process_daemon() as d:
        reader, writer = await raw(d.socket)
        writer.write(wire)
        frame = await reply(reader)
        assert frame["type"] == "error" and frame["error"]["code"] == code
        assert await reply(reader) is None  # closed: the rest of that stream is not trusted
        writer.close()
        async with AsyncClient(d.socket) as c:
            assert (await c.status()).ready


async def test_a_hang_up_mid_request_drops_the_job():
    engine = GatedEngine()
    async with in_process_daemon(engine) as d:
        reader, writer = await raw(d.socket)
        writer.write(protocol.Request(op="transcribe", id="gone-1", audio_size=len(WAV)).to_frame()
                     + protocol.frame(WAV))
        await writer.drain()
        await wait_event(engine.started)
        async with AsyncClient(d.socket) as c:
            assert (await c.status()).running == 1
        writer.close()  # the client goes away mid-inference
        await wait_event(engine.stopped)  # stopped at its next segment, not run to the end
        assert (engine.cancelled, engine.finished) == (1, 0)
        await until(lambda: not d.pool.running)
        status = d.server.daemon_status()
        assert status.served == 0 and status.running == 0
        if "dropped_running" in status.counters:  # the pool's counters, where it keeps them
            assert status.counters["dropped_running"] == 1
        engine.release.set()
        async with AsyncClient(d.socket) as c:  # and the daemon serves the next one
            assert (await c.transcribe(WAV)).text == "gated"
        assert engine.finished == 1


async def test_drain_finishes_in_flight_work_and_refuses_new_work():
    engine = GatedEngine()
    async with in_process_daemon(engine) as d:
        idle = AsyncClient(d.socket, size=1)
        assert await idle.ping()  # a connection opened before the drain, now idle in the pool
        async with AsyncClient(d.socket) as busy:
            in_flight = asyncio.ensure_future(busy.transcribe(WAV))
            await wait_event(engine.started)
            drain = asyncio.ensure_future(d.server.drain(10))
            await until(lambda: d.server.draining)
            with pytest.raises(NotReady):  # the listener is closed: no new connections
                await AsyncClient(d.socket).status()
            with pytest.raises(ShuttingDown):  # nor new work on an old one
                await idle.transcribe(WAV)
            engine.release.set()
            result = await asyncio.wait_for(in_flight, 10)  # what was running is answered
            assert result.text == "gated" and result.worker == "hot"
            await asyncio.wait_for(drain, 10)
        await idle.close()
        assert engine.finished == 1 and d.server.served == 1


async def test_the_server_hands_the_audio_over_to_the_pool():
    """Once the pool has the upload, nothing in the server keeps those bytes alive.

    The pool drops them when they are decoded; a frame of the server still holding
    them would keep every queued upload's encoded bytes in memory beside its samples.
    """
    async with in_process_daemon() as d:
        submit = d.pool.submit
        holders: list[str] = []

        async def probing_submit(job, audio):
            this = asyncio.current_task().get_coro()
            gc.collect()
            holders.extend(type(r).__name__ + ":" + getattr(r, "__qualname__", "?")
                           for r in gc.get_referrers(audio) if r is not this)
            return await submit(job, audio)

        d.pool.submit = probing_submit
        async with AsyncClient(d.socket) as c:
            assert (await c.transcribe(WAV)).worker == "hot"
    assert holders == []
