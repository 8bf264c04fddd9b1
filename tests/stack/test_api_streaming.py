"""stream=true: Server-Sent Events, a delta per decoded segment, then the full text."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import aiohttp
import pytest
from openai import AsyncOpenAI, BadRequestError, OpenAI

from testing.speech import FOX_FILES, FOX_TEXT, LONG_FILE, LONG_TEXT, long_speech_wav, word_recall
from testing.stack import drops
from tests.stack.test_api_transcribe import silence_wav


def _running(stack) -> int:
    with urllib.request.urlopen(stack.url + "/health", timeout=10) as r:
        return json.load(r)["running"]


def test_stream_is_incremental_on_the_long_file(fw_stack):
    """The first delta arrives while the daemon is still decoding the rest (~130 s: more windows
    than lanes, so the first window's words go out before the last window is taken)."""
    events = []
    running_at_first_delta = None
    with OpenAI(base_url=fw_stack.url + "/v1", api_key="x", max_retries=0, timeout=300) as client:
        started = time.monotonic()
        stream = client.audio.transcriptions.create(model="whisper-1", file=("long.wav", long_speech_wav(4)),
                                                    stream=True)
        for event in stream:
            events.append((time.monotonic() - started, event))
            if running_at_first_delta is None and event.type == "transcript.text.delta":
                running_at_first_delta = _running(fw_stack)
    deltas = [(t, e) for t, e in events if e.type == "transcript.text.delta"]
    done_at, done = events[-1]
    assert done.type == "transcript.text.done"
    assert [e.type for _, e in events].count("transcript.text.done") == 1
    assert len(deltas) >= 2
    # Truly incremental: at the first delta the request was still running in the daemon.
    assert running_at_first_delta >= 1
    first_at = deltas[0][0]
    assert first_at < done_at
    print(f"\nstreaming 130 s: first delta {first_at:.2f} s, done {done_at:.2f} s, "
          f"{len(deltas)} deltas")
    assert "".join(e.delta for _, e in deltas).strip() == done.text
    assert word_recall(" ".join([LONG_TEXT] * 4), done.text) >= 0.8, done.text


async def test_stream_async_sdk_short_clip(fw_stack):
    async with AsyncOpenAI(base_url=fw_stack.url + "/v1", api_key="x", max_retries=0, timeout=120) as client:
        stream = await client.audio.transcriptions.create(model="whisper-1", file=FOX_FILES["mp3"], stream=True)
        events = [event async for event in stream]
    assert [e.type for e in events][-1] == "transcript.text.done"
    assert all(e.type == "transcript.text.delta" for e in events[:-1]) and len(events) >= 2
    assert word_recall(FOX_TEXT, events[-1].text) >= 0.8


async def test_stream_wire_format(fw_stack):
    """`text/event-stream`, each event one `data: {json}` line and a blank line, no [DONE]."""
    form = aiohttp.FormData()
    form.add_field("model", "whisper-1")
    form.add_field("stream", "true")
    form.add_field("file", silence_wav(), filename="silence.wav")
    async with aiohttp.ClientSession() as session:
        async with session.post(fw_stack.url + "/v1/audio/transcriptions", data=form) as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "text/event-stream"
            assert r.headers["Cache-Control"] == "no-cache"
            raw = await r.text()
    # Silence: no segment, so no delta; the done event carries the empty text.
    assert raw == 'data: {"type": "transcript.text.done", "text": ""}\n\n'


async def test_stream_error_before_any_text_is_an_ordinary_error(fw_stack):
    async with AsyncOpenAI(base_url=fw_stack.url + "/v1", api_key="x", max_retries=0) as client:
        with pytest.raises(BadRequestError) as info:
            await client.audio.transcriptions.create(model="whisper-1", file=("x.wav", b"not audio" * 100),
                                                     stream=True)
    assert info.value.response.json()["error"]["code"] == "audio_decode_failed"


async def test_client_that_hangs_up_has_its_work_dropped(fw_stack):
    """The shim cancels a request whose HTTP client went away; the daemon drops it."""
    before = drops(fw_stack.daemon.socket)
    form = aiohttp.FormData()
    form.add_field("file", LONG_FILE.read_bytes(), filename="long.mp3")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(asyncio.TimeoutError):
            async with session.post(fw_stack.url + "/v1/audio/transcriptions", data=form,
                                    timeout=aiohttp.ClientTimeout(total=1.0)):
                pass
    deadline = time.monotonic() + 10
    while drops(fw_stack.daemon.socket) == before:
        assert time.monotonic() < deadline, fw_stack.daemon.log()[-2000:]
        await asyncio.sleep(0.1)
    status, metrics = fw_stack.shim.get("/metrics")
    assert 'whisperd_http_requests_total{route="/v1/audio/transcriptions",status="499"}' in metrics.decode()
