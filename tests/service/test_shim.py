"""The shim's aiohttp app against an in-process daemon on the null engine (no model, no child process)."""

from __future__ import annotations

import asyncio
import dataclasses
from contextlib import asynccontextmanager
from typing import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from shim.app import build_app
from shim.config import SHIM_SETTINGS, ShimConfig
from tests.service.inprocess_daemon import (
    GatedEngine,
    in_process_daemon,
    until,
    wait_event,
    wav_bytes,
)
from whisperd.client import AsyncClient
from whisperd.core.model_names import DEFAULT_ALIASES
from whisperd.core.settings import build

WAV = wav_bytes(2.0)
ERROR_KEYS = {"message", "type", "param", "code"}


def shim_config(socket: str, **settings) -> ShimConfig:
    return dataclasses.replace(build(ShimConfig, SHIM_SETTINGS, "shim", {}, {}, "/dev/null"), socket=socket,
                               **settings)


@asynccontextmanager
async def http(socket: str) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(build_app(shim_config(socket)))) as client:
        yield client


def upload(**fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("file", WAV, filename="speech.wav", content_type="audio/wav")
    for name, value in {"model": "whisper-1", **fields}.items():
        form.add_field(name, value)
    return form


def ready_engine() -> GatedEngine:
    engine = GatedEngine()  # answers at once, with one segment of text
    engine.release.set()
    return engine


async def test_health_carries_the_daemon_status():
    async with in_process_daemon() as d, http(d.socket) as web:
        r = await web.get("/health")
        body = await r.json()
    assert r.status == 200
    assert (body["status"], body["model"], body["engine"], body["device"]) == ("ok", "tiny.en", "null", "cpu")
    assert body["workers"] == {"hot": 1, "cold": 0} and body["lanes"][0]["id"] == "hot"
    assert isinstance(body["counters"], dict)


async def test_health_says_shutting_down_while_the_daemon_drains():
    engine = GatedEngine()
    async with in_process_daemon(engine) as d, http(d.socket) as web:
        assert (await web.get("/health")).status == 200  # the shim now holds a connection
        async with AsyncClient(d.socket) as busy:
            in_flight = asyncio.ensure_future(busy.transcribe(WAV))
            await wait_event(engine.started)
            drain = asyncio.ensure_future(d.server.drain(10))
            await until(lambda: d.server.draining)
            r = await web.get("/health")
            body = await r.json()
            assert r.status == 503 and r.headers["Retry-After"] == "1"
            assert body["status"] == "draining" and body["error"]["code"] == "shutting_down"
            engine.release.set()
            await asyncio.wait_for(in_flight, 10)
            await asyncio.wait_for(drain, 10)
        r = await web.get("/health")
        assert r.status == 503 and (await r.json())["error"]["code"] == "not_ready"  # gone


async def test_models_list_the_aliases_and_what_the_daemon_serves():
    async with in_process_daemon() as d, http(d.socket) as web:
        listing = await (await web.get("/v1/models")).json()
        alias = await (await web.get("/v1/models/whisper-1")).json()
        missing = await web.get("/v1/models/large-v9")
        missing_body = await missing.json()
    data = {m["id"]: m for m in listing["data"]}
    assert listing["object"] == "list" and list(data) == [*DEFAULT_ALIASES, "tiny.en", "base"]
    assert data["tiny.en"] == {"id": "tiny.en", "object": "model", "created": 0, "owned_by": "whisperd",
                               "loaded": True, "multilingual": False, "default": True}
    assert data["base"]["loaded"] is False and data["base"]["multilingual"] is True
    assert alias["alias_of"] == "tiny.en" and alias["loaded"] is True
    assert missing.status == 404 and missing_body["error"]["code"] == "model_not_found"


async def test_a_transcription_as_json():
    async with in_process_daemon(ready_engine()) as d, http(d.socket) as web:
        r = await web.post("/v1/audio/transcriptions", data=upload())
        body = await r.json()
        assert r.status == 200 and r.headers["X-Whisperd-Worker"] == "hot"
        assert body == {"text": "gated"}
        assert d.server.served == 1


async def test_a_transcription_as_verbose_json():
    async with in_process_daemon(ready_engine()) as d, http(d.socket) as web:
        r = await web.post("/v1/audio/transcriptions",
                           data=upload(response_format="verbose_json", language="en"))
        body = await r.json()
    assert r.status == 200
    assert (body["task"], body["language"], body["text"]) == ("transcribe", "english", "gated")
    assert body["duration"] == pytest.approx(2.0)
    assert [s["text"] for s in body["segments"]] == [" gated"]


@pytest.mark.parametrize("fields, status, code, param", [
    ({"model": "large-v9"}, 404, "model_not_found", "model"),
    ({"language": "de"}, 400, "unsupported_for_model", "language"),
])
async def test_a_daemon_refusal_in_openais_shape(fields, status, code, param):
    async with in_process_daemon() as d, http(d.socket) as web:
        r = await web.post("/v1/audio/transcriptions", data=upload(**fields))
        body = await r.json()
    assert r.status == status
    assert set(body) == {"error"} and set(body["error"]) == ERROR_KEYS
    assert (body["error"]["code"], body["error"]["param"], body["error"]["type"]) == (
        code, param, "invalid_request_error")


async def test_a_translation_on_an_english_only_model_is_refused():
    async with in_process_daemon() as d, http(d.socket) as web:
        r = await web.post("/v1/audio/translations", data=upload())
        body = await r.json()
    assert r.status == 400 and body["error"]["code"] == "unsupported_for_model" and body["error"]["param"] == "model"


async def test_metrics_mirror_the_daemon_status():
    async with in_process_daemon() as d, http(d.socket) as web:
        await web.post("/v1/audio/transcriptions", data=upload())
        text = await (await web.get("/metrics")).text()
    assert "whisperd_daemon_up 1.0" in text
    assert 'whisperd_workers{kind="hot"} 1.0' in text and "whisperd_queue_depth 0.0" in text
    assert "whisperd_audio_seconds_count 1.0" in text


def test_metrics_carry_the_daemon_counters():
    from shim.metrics import Metrics
    from whisperd.core.replies import DaemonStatus

    metrics = Metrics()
    metrics.observe_daemon(DaemonStatus(queue=3, workers={"hot": 1, "cold": 2},
                                        counters={"retries": 2, "dropped_running": 1}))
    text = metrics.render().decode()
    assert 'whisperd_daemon_events{event="retries"} 2.0' in text
    assert 'whisperd_daemon_events{event="dropped_running"} 1.0' in text
    assert 'whisperd_workers{kind="cold"} 2.0' in text and "whisperd_queue_depth 3.0" in text
