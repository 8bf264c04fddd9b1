"""OpenAI's transcription API through the official SDK (sync and async) against the real stack.

Every response_format, every parameter and its validation, content types,
silence, models. Uses the session's faster-whisper stack (`fw_stack`); the short
fox clip runs on the hot worker in well under a second.
"""

from __future__ import annotations

import io
import json
import math
import re
import wave

import aiohttp
import pytest
from aiohttp import web
from openai import APIStatusError, AsyncOpenAI, BadRequestError, NotFoundError, OpenAI

from testing.speech import FOX_FILES, FOX_TEXT, word_recall, words
from whisperd.core.formats import format_timestamp

FOX = FOX_FILES["wav"]
SEGMENT_FIELDS = {
    "id": int, "seek": int, "start": float, "end": float, "text": str, "tokens": list,
    "temperature": float, "avg_logprob": float, "compression_ratio": float, "no_speech_prob": float,
}


def sdk(stack) -> OpenAI:
    return OpenAI(base_url=stack.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def async_sdk(stack) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=stack.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def silence_wav(seconds: float = 5.0, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * int(seconds * rate))
    return buf.getvalue()


def assert_openai_error(body: dict, code: str, param: str | None = None) -> None:
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"], body
    if param is not None:
        assert body["error"]["param"] == param, body


# --- response formats --------------------------------------------------------------------


def test_json_is_the_default_and_labelled_application_json(fw_stack):
    with sdk(fw_stack) as client:
        raw = client.audio.transcriptions.with_raw_response.create(model="whisper-1", file=FOX)
    # Open-WebUI sends no response_format and needs exactly this: JSON, labelled so, with `text`.
    assert raw.headers["content-type"] == "application/json"
    body = json.loads(raw.text)
    assert set(body) == {"text"}
    assert word_recall(FOX_TEXT, body["text"]) >= 0.8, body


def test_text_format(fw_stack):
    with sdk(fw_stack) as client:
        raw = client.audio.transcriptions.with_raw_response.create(model="whisper-1", file=FOX, response_format="text")
        body = raw.parse()
    assert raw.headers["content-type"] == "text/plain; charset=utf-8"
    assert isinstance(body, str) and body.endswith("\n") and "-->" not in body
    assert word_recall(FOX_TEXT, body) >= 0.8, body


def test_verbose_json_has_every_field(fw_stack):
    with sdk(fw_stack) as client:
        raw = client.audio.transcriptions.with_raw_response.create(
            model="whisper-1", file=FOX, response_format="verbose_json")
    assert raw.headers["content-type"] == "application/json"
    body = json.loads(raw.text)
    assert set(body) == {"task", "language", "duration", "text", "segments", "usage"}  # no words unless asked
    assert body["task"] == "transcribe"
    assert body["language"] == "english"  # the full name, not "en"
    assert body["duration"] == pytest.approx(3.8, abs=0.3)
    assert body["usage"] == {"type": "duration", "seconds": math.ceil(body["duration"])}
    assert word_recall(FOX_TEXT, body["text"]) >= 0.8
    assert body["segments"]
    for i, seg in enumerate(body["segments"]):
        assert set(seg) == set(SEGMENT_FIELDS), seg
        for key, kind in SEGMENT_FIELDS.items():
            assert isinstance(seg[key], kind), (key, seg[key])
        assert seg["id"] == i
        # Whisper's timestamp tokens step in 0.02 s and the last one may overshoot the audio a little.
        assert 0 <= seg["start"] < seg["end"] <= body["duration"] + 1.0
        assert seg["tokens"] and all(isinstance(t, int) for t in seg["tokens"])
        assert 0 <= seg["no_speech_prob"] <= 1 and seg["avg_logprob"] <= 0
    parsed = raw.parse()  # the SDK's own type
    assert parsed.language == "english" and parsed.segments[0].tokens and parsed.usage.seconds >= 4


def test_srt_and_vtt_cues_match_the_verbose_segments(fw_stack):
    """The subtitle bodies carry exactly the segments' times (through integer milliseconds) and texts."""
    with sdk(fw_stack) as client:
        verbose = client.audio.transcriptions.create(model="whisper-1", file=FOX, response_format="verbose_json")
        srt = client.audio.transcriptions.with_raw_response.create(model="whisper-1", file=FOX, response_format="srt")
        vtt = client.audio.transcriptions.with_raw_response.create(model="whisper-1", file=FOX, response_format="vtt")
    assert srt.headers["content-type"] == "text/plain; charset=utf-8"  # what OpenAI answers for srt
    assert vtt.headers["content-type"] == "text/vtt; charset=utf-8"
    want_srt = "".join(
        f"{i}\n{format_timestamp(s.start, ',')} --> {format_timestamp(s.end, ',')}\n{s.text.strip()}\n\n"
        for i, s in enumerate(verbose.segments, start=1))
    want_vtt = "WEBVTT\n\n" + "".join(
        f"{format_timestamp(s.start)} --> {format_timestamp(s.end)}\n{s.text.strip()}\n\n" for s in verbose.segments)
    assert srt.parse() == want_srt
    assert vtt.parse() == want_vtt
    assert re.match(r"1\n\d\d:\d\d:\d\d,\d\d\d --> \d\d:\d\d:\d\d,\d\d\d\n\S", want_srt)
    assert word_recall(FOX_TEXT, srt.parse()) >= 0.8


async def test_word_timestamps_fill_words_async(fw_stack):
    async with async_sdk(fw_stack) as client:
        result = await client.audio.transcriptions.create(
            model="whisper-1", file=FOX, response_format="verbose_json", timestamp_granularities=["word"])
    assert result.words, "timestamp_granularities=['word'] must fill `words`"
    assert word_recall(FOX_TEXT, " ".join(w.word for w in result.words)) >= 0.8
    previous_end = 0.0
    for w in result.words:
        assert w.word.strip()
        assert previous_end - 0.01 <= w.start <= w.end <= result.duration + 1.0, w
        previous_end = w.end
    assert result.segments  # segments stay alongside words


async def test_the_sdk_sends_the_granularity_field_the_shim_reads():
    """Pin the wire name: the SDK sends `timestamp_granularities[]` (and `stream` as `true`)."""
    seen: list[tuple[str, str]] = []

    async def capture(request: web.Request) -> web.Response:
        reader = await request.multipart()
        async for part in reader:
            if part.name != "file":
                seen.append((part.name, (await part.read()).decode()))
        return web.json_response({"text": ""})

    app = web.Application()
    app.router.add_post("/v1/audio/transcriptions", capture)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0) as client:
            await client.audio.transcriptions.create(model="whisper-1", file=FOX, response_format="verbose_json",
                                                     timestamp_granularities=["word", "segment"])
    finally:
        await runner.cleanup()
    assert ("timestamp_granularities[]", "word") in seen and ("timestamp_granularities[]", "segment") in seen
    from shim.form import AudioForm, apply_field

    form = AudioForm()
    for name, value in seen:
        apply_field(form, name, value, translate=False)
    assert form.words and form.response_format == "verbose_json"


# --- parameters ----------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, param", [
    ({"language": "xx"}, "language"),
    ({"language": "klingon"}, "language"),
    ({"temperature": 1.5}, "temperature"),
    ({"temperature": -0.1}, "temperature"),
    ({"response_format": "docx"}, "response_format"),
    ({"extra_body": {"timestamp_granularities[]": "letter"}}, "timestamp_granularities"),
    ({"extra_body": {"stream": "maybe"}}, "stream"),
])
def test_bad_parameters_are_400_naming_the_parameter(fw_stack, kwargs, param):
    with sdk(fw_stack) as client, pytest.raises(BadRequestError) as info:
        client.audio.transcriptions.create(model="whisper-1", file=FOX, **kwargs)
    assert info.value.status_code == 400
    assert_openai_error(info.value.response.json(), "invalid_parameter", param)


def test_english_only_model_refuses_another_language(fw_stack):
    with sdk(fw_stack) as client, pytest.raises(BadRequestError) as info:
        client.audio.transcriptions.create(model="tiny.en", file=FOX, language="es")
    body = info.value.response.json()
    assert_openai_error(body, "unsupported_for_model", "language")
    assert "tiny.en" in body["error"]["message"]


@pytest.mark.parametrize("temperature, language", [(0.0, "en"), (1.0, None)])
async def test_temperature_bounds_and_language_code_async(fw_stack, temperature, language):
    async with async_sdk(fw_stack) as client:
        result = await client.audio.transcriptions.create(
            model="whisper-1", file=FOX, temperature=temperature, response_format="verbose_json",
            **({"language": language} if language else {}))
    assert words(result.text)
    if temperature == 0.0:
        assert word_recall(FOX_TEXT, result.text) >= 0.8
        assert all(s.temperature == 0.0 for s in result.segments)  # the first try of the fallback sequence


def test_default_model_by_name_with_language_name_and_prompt(fw_stack):
    """`tiny.en` (the default's own name) like `whisper-1`; a language given by name; a prompt."""
    with sdk(fw_stack) as client:
        result = client.audio.transcriptions.create(
            model="tiny.en", file=FOX, language="English", prompt="The quick brown fox jumps over the lazy dog.")
    assert word_recall(FOX_TEXT, result.text) >= 0.8


@pytest.mark.parametrize("model", ["gpt-4o-transcribe", "gpt-4o-mini-transcribe"])
def test_openais_newer_model_names_mean_the_default_model(fw_stack, model):
    """Agent frameworks and voice SDKs hard-code these; they get the default model, not a 404."""
    with sdk(fw_stack) as client:
        result = client.audio.transcriptions.create(model=model, file=FOX)
        alias = client.models.retrieve(model)
    assert word_recall(FOX_TEXT, result.text) >= 0.8
    assert alias.model_dump()["alias_of"] == "tiny.en"


async def test_unknown_model_is_404_model_not_found_async(fw_stack):
    async with async_sdk(fw_stack) as client:
        with pytest.raises(NotFoundError) as info:
            await client.audio.transcriptions.create(model="large-v9", file=FOX)
    assert_openai_error(info.value.response.json(), "model_not_found", "model")


# --- silence -------------------------------------------------------------------------------


def test_five_seconds_of_silence_is_empty_text(fw_stack):
    with sdk(fw_stack) as client:
        plain = client.audio.transcriptions.create(model="whisper-1", file=("silence.wav", silence_wav()))
        verbose = client.audio.transcriptions.create(model="whisper-1", file=("silence.wav", silence_wav()),
                                                     response_format="verbose_json")
    assert plain.text == ""
    assert verbose.text == "" and verbose.segments == [] and verbose.duration == pytest.approx(5.0)


# --- models --------------------------------------------------------------------------------


def test_models_list_and_retrieve(fw_stack):
    with sdk(fw_stack) as client:
        listed = {m.id: m for m in client.models.list().data}
        alias = client.models.retrieve("whisper-1")
        with pytest.raises(NotFoundError) as info:
            client.models.retrieve("large-v9")
    assert {"whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "tiny.en", "base"} <= set(listed)
    for m in listed.values():
        assert m.object == "model" and isinstance(m.created, int) and m.owned_by == "whisperd"
    tiny, base = listed["tiny.en"].model_dump(), listed["base"].model_dump()
    assert tiny["loaded"] is True and tiny["default"] is True and tiny["multilingual"] is False
    assert base["multilingual"] is True and base["default"] is False
    assert alias.model_dump()["alias_of"] == "tiny.en"
    assert_openai_error(info.value.response.json(), "model_not_found", "model")


async def test_models_list_async(fw_stack):
    async with async_sdk(fw_stack) as client:
        ids = [m.id async for m in client.models.list()]
        retrieved = await client.models.retrieve("base")
    assert ids[0] == "whisper-1" and {"tiny.en", "base"} <= set(ids)
    assert retrieved.id == "base" and retrieved.model_dump()["multilingual"] is True


# --- other request shapes ------------------------------------------------------------------


async def test_open_webui_json_request_mode(fw_stack):
    """AUDIO_STT_OPENAI_API_REQUEST_FORMAT=json: application/json with base64 `input_audio`."""
    import base64

    payload = {"model": "whisper-1", "language": "en",
               "input_audio": {"data": base64.b64encode(FOX_FILES["mp3"].read_bytes()).decode(), "format": "mp3"}}
    async with aiohttp.ClientSession() as session:
        async with session.post(fw_stack.url + "/v1/audio/transcriptions", json=payload,
                                headers={"Authorization": "Bearer sk-anything"}) as r:
            assert r.status == 200, await r.text()
            assert r.headers["Content-Type"] == "application/json"
            body = await r.json()
    assert word_recall(FOX_TEXT, body["text"]) >= 0.8


async def test_chunked_multipart_without_content_length(fw_stack):
    data = FOX_FILES["flac"].read_bytes()

    async def chunks():
        for i in range(0, len(data), 1000):
            yield data[i:i + 1000]

    form = aiohttp.FormData()
    form.add_field("model", "whisper-1")
    form.add_field("response_format", "text")
    form.add_field("file", chunks(), filename="recording.flac")
    async with aiohttp.ClientSession() as session:
        async with session.post(fw_stack.url + "/v1/audio/transcriptions", data=form) as r:
            assert r.request_info.headers.get("Transfer-Encoding") == "chunked"
            assert "Content-Length" not in r.request_info.headers
            assert r.status == 200, await r.text()
            text = await r.text()
    assert word_recall(FOX_TEXT, text) >= 0.8


def test_undecodable_audio_is_400_in_openai_shape(fw_stack):
    with sdk(fw_stack) as client, pytest.raises(APIStatusError) as info:
        client.audio.transcriptions.create(model="whisper-1", file=("a.mp3", b"\xff\xfb" + b"junk" * 500))
    assert info.value.status_code == 400
    assert_openai_error(info.value.response.json(), "audio_decode_failed", "file")
