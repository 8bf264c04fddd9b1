"""The whole path for real: openai SDK → HTTP shim → Unix socket → daemon → real model."""

from __future__ import annotations

import asyncio
import json
import uuid

import aiohttp
import pytest
from openai import APIStatusError, AsyncOpenAI, OpenAI

from testing.speech import FOX_FILES, FOX_TEXT, LONG_FILE, LONG_TEXT, word_recall


def sdk(stack) -> OpenAI:
    return OpenAI(base_url=stack.url + "/v1", api_key="unused", max_retries=0, timeout=300)


def test_sdk_transcribes_speech_with_each_engine(stack):
    with sdk(stack) as client, open(FOX_FILES["wav"], "rb") as f:
        result = client.audio.transcriptions.create(model="whisper-1", file=f)
    assert word_recall(FOX_TEXT, result.text) >= 0.8, result.text


def test_long_recording_with_each_engine(stack):
    with sdk(stack) as client, open(LONG_FILE, "rb") as f:
        result = client.audio.transcriptions.create(model="whisper-1", file=f)
    assert word_recall(LONG_TEXT, result.text) >= 0.8, result.text


@pytest.mark.parametrize("container", sorted(FOX_FILES))
def test_every_container_is_judged_by_content(fw_stack, container):
    # Name every upload "audio.bin": the format must come from the bytes.
    with sdk(fw_stack) as client:
        data = FOX_FILES[container].read_bytes()
        result = client.audio.transcriptions.create(model="whisper-1", file=("audio.bin", data))
    assert word_recall(FOX_TEXT, result.text) >= 0.8, (container, result.text)


def test_text_format_and_worker_header(fw_stack):
    with sdk(fw_stack) as client:
        raw = client.audio.transcriptions.with_raw_response.create(
            model="whisper-1", file=FOX_FILES["mp3"], response_format="text"
        )
    assert raw.headers["content-type"].startswith("text/plain")
    assert raw.headers["x-whisperd-worker"] == "hot"
    assert word_recall(FOX_TEXT, raw.text) >= 0.8


def test_undecodable_audio_is_a_400_in_openai_shape(fw_stack):
    with sdk(fw_stack) as client, pytest.raises(APIStatusError) as info:
        client.audio.transcriptions.create(model="whisper-1", file=("speech.wav", b"not audio at all" * 50))
    assert info.value.status_code == 400
    body = info.value.response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == "audio_decode_failed"
    assert body["error"]["param"] == "file"


def test_empty_file_is_a_400(fw_stack):
    with sdk(fw_stack) as client, pytest.raises(APIStatusError) as info:
        client.audio.transcriptions.create(model="whisper-1", file=("empty.wav", b""))
    assert info.value.status_code == 400
    assert info.value.response.json()["error"]["code"] == "audio_empty"


def test_unknown_model_is_404_model_not_found(fw_stack):
    with sdk(fw_stack) as client, pytest.raises(APIStatusError) as info:
        client.audio.transcriptions.create(model="no-such-model", file=FOX_FILES["wav"])
    assert info.value.status_code == 404
    assert info.value.response.json()["error"]["code"] == "model_not_found"


def test_health_and_models(fw_stack):
    status, body = fw_stack.shim.get("/health")
    assert status == 200
    health = json.loads(body)
    assert health["status"] == "ok" and health["model"] == "tiny.en"
    with sdk(fw_stack) as client:
        ids = [m.id for m in client.models.list().data]
    assert "whisper-1" in ids and "tiny.en" in ids


def test_health_is_503_when_the_daemon_is_gone():
    from testing.stack import Shim

    shim = Shim("/tmp/no-daemon-here.sock")
    try:
        status, body = shim.get("/health")
        assert status == 503
        with OpenAI(base_url=shim.url + "/v1", api_key="x", max_retries=0) as client:
            with pytest.raises(APIStatusError) as info:
                client.audio.transcriptions.create(model="whisper-1", file=FOX_FILES["wav"])
        assert info.value.status_code == 503
        assert info.value.response.json()["error"]["code"] == "not_ready"
    finally:
        shim.stop()


async def test_concurrent_async_requests_all_answered(fw_stack):
    async with AsyncOpenAI(base_url=fw_stack.url + "/v1", api_key="x", max_retries=0, timeout=300) as client:
        results = await asyncio.gather(*[
            client.audio.transcriptions.create(model="whisper-1", file=FOX_FILES[c])
            for c in ("wav", "mp3", "ogg", "webm")
        ])
    for r in results:
        assert word_recall(FOX_TEXT, r.text) >= 0.8, r.text


async def test_open_webui_shaped_chunked_upload(fw_stack):
    """Open-WebUI: chunked body, `<uuid>.webm`, no part content type, Bearer key, no response_format."""
    data = FOX_FILES["webm"].read_bytes()

    async def chunks():
        for i in range(0, len(data), 4096):
            yield data[i : i + 4096]

    async def one(session: aiohttp.ClientSession) -> dict:
        form = aiohttp.FormData()
        form.add_field("model", "whisper-1")
        form.add_field("file", chunks(), filename=f"{uuid.uuid4()}.webm")
        async with session.post(fw_stack.url + "/v1/audio/transcriptions", data=form,
                                headers={"Authorization": "Bearer sk-anything"}) as r:
            assert r.status == 200, await r.text()
            assert r.headers["Content-Type"].startswith("application/json")
            assert r.headers.get("Content-Length") is not None or r.chunked is False
            return await r.json()

    async with aiohttp.ClientSession() as session:
        bodies = await asyncio.gather(*[one(session) for _ in range(4)])
    for body in bodies:
        assert word_recall(FOX_TEXT, body["text"]) >= 0.8, body
