"""The service around the API: upload limits, auth, CORS, error shapes, /health, /metrics.

Most checks fail before anything is forwarded, so they run against extra shim
processes (cheap: no model) pointed at the session daemon's socket.
"""

from __future__ import annotations

import asyncio
import json
import math

import aiohttp
import pytest
from openai import APIStatusError, AuthenticationError, OpenAI
from prometheus_client.parser import text_string_to_metric_families

from testing.speech import FOX_FILES, FOX_TEXT, word_recall
from testing.stack import Shim

OPENAI_LIMIT = 25 * 1024 * 1024
SMALL_LIMIT = 64 * 1024


def assert_openai_error(body: dict, code: str, param: str | None = None) -> None:
    assert set(body) >= {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    assert body["error"]["type"] in ("invalid_request_error", "server_error"), body
    if param is not None:
        assert body["error"]["param"] == param, body


async def _request(method: str, url: str, **kwargs) -> tuple[int, dict, str]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, **kwargs) as r:
            return r.status, dict(r.headers), await r.text()


@pytest.fixture(scope="module")
def small_shim(fw_stack):
    shim = Shim(fw_stack.daemon.socket, "--max-upload-bytes", str(SMALL_LIMIT))
    yield shim
    shim.stop()


@pytest.fixture(scope="module")
def secure_shim(fw_stack):
    """API key on the command line, CORS for one origin."""
    shim = Shim(fw_stack.daemon.socket, "--api-key", "secret", "--cors-origins", "http://a.example")
    yield shim
    shim.stop()


# --- limits --------------------------------------------------------------------------------


def test_upload_over_25_mib_is_413_in_openai_shape(fw_stack):
    with OpenAI(base_url=fw_stack.url + "/v1", api_key="x", max_retries=0, timeout=60) as client:
        with pytest.raises(APIStatusError) as info:
            client.audio.transcriptions.create(model="whisper-1", file=("big.wav", b"\0" * (OPENAI_LIMIT + 1)))
    assert info.value.status_code == 413
    assert_openai_error(info.value.response.json(), "audio_too_large", "file")


async def test_chunked_upload_over_the_limit_stops_at_the_limit(small_shim):
    """No Content-Length: the shim reads up to the limit, answers 413, and reads no further."""
    offered = 1 << 30
    sent = 0
    answered = asyncio.Event()

    async def endless():
        nonlocal sent
        chunk = b"\0" * 16384
        while sent < offered and not answered.is_set():
            sent += len(chunk)
            yield chunk

    form = aiohttp.FormData()
    form.add_field("model", "whisper-1")
    form.add_field("file", endless(), filename="huge.wav")
    async with aiohttp.ClientSession() as session:
        async with session.post(small_shim.url + "/v1/audio/transcriptions", data=form) as r:
            answered.set()
            sent_when_answered = sent
            assert "Content-Length" not in r.request_info.headers
            status, body = r.status, await r.json()
    assert status == 413
    assert_openai_error(body, "audio_too_large", "file")
    assert str(SMALL_LIMIT) in body["error"]["message"]
    # Answered after a sliver of the gigabyte on offer (the rest is socket buffers).
    assert sent_when_answered < 16 * 1024 * 1024, sent_when_answered
    print(f"\n413 after {sent_when_answered} bytes sent of {offered} offered (limit {SMALL_LIMIT})")


async def test_content_length_over_the_limit_is_refused_before_reading(small_shim):
    form = aiohttp.FormData()
    form.add_field("file", b"\0" * (2 * SMALL_LIMIT), filename="big.wav")
    status, _, text = await _request("POST", small_shim.url + "/v1/audio/transcriptions", data=form)
    assert status == 413
    assert_openai_error(json.loads(text), "audio_too_large", "file")


async def test_chunked_upload_under_the_limit_is_accepted(small_shim):
    data = FOX_FILES["webm"].read_bytes()
    assert len(data) < SMALL_LIMIT

    async def chunks():
        for i in range(0, len(data), 4096):
            yield data[i:i + 4096]

    form = aiohttp.FormData()
    form.add_field("model", "whisper-1")
    form.add_field("file", chunks(), filename="a.webm")
    status, _, text = await _request("POST", small_shim.url + "/v1/audio/transcriptions", data=form)
    assert status == 200, text
    assert word_recall(FOX_TEXT, json.loads(text)["text"]) >= 0.8


async def test_json_mode_over_the_limit_is_413(small_shim):
    import base64

    payload = {"model": "whisper-1", "input_audio": {"data": base64.b64encode(b"\0" * (SMALL_LIMIT + 1)).decode()}}
    status, _, text = await _request("POST", small_shim.url + "/v1/audio/transcriptions", json=payload)
    assert status == 413
    assert_openai_error(json.loads(text), "audio_too_large", "file")


# --- every error in OpenAI's shape ---------------------------------------------------------


@pytest.mark.parametrize("method, path, kwargs, status, code", [
    ("GET", "/v1/nothing", {}, 404, "not_found"),
    ("GET", "/v1/audio/transcriptions", {}, 405, "method_not_allowed"),
    ("DELETE", "/health", {}, 405, "method_not_allowed"),
    ("POST", "/v1/audio/transcriptions", {"data": "--x\r\ngarbage", "headers": {
        "Content-Type": "multipart/form-data; boundary=zzz"}}, 400, "invalid_request"),
    ("POST", "/v1/audio/transcriptions", {"data": "x", "headers": {"Content-Type": "multipart/form-data"}},
     400, "invalid_request"),
    ("POST", "/v1/audio/transcriptions", {"data": aiohttp.FormData({"model": "whisper-1"})}, 400, "invalid_request"),
    ("POST", "/v1/audio/transcriptions", {"data": "file=abc"}, 400, "invalid_request"),
    ("POST", "/v1/audio/transcriptions", {"data": "{not json", "headers": {"Content-Type": "application/json"}},
     400, "invalid_request"),
    ("POST", "/v1/audio/transcriptions", {"json": {"input_audio": {"data": "@@@"}}}, 400, "invalid_parameter"),
    ("POST", "/v1/audio/transcriptions", {"json": {"model": "whisper-1"}}, 400, "invalid_request"),
])
async def test_every_error_has_the_four_keys(fw_stack, method, path, kwargs, status, code):
    got, headers, text = await _request(method, fw_stack.url + path, **kwargs)
    assert got == status, text
    assert headers["Content-Type"].startswith("application/json")
    assert_openai_error(json.loads(text), code)


async def test_no_daemon_is_503_with_the_four_keys():
    shim = Shim("/tmp/no-daemon-here.sock")
    try:
        for path in ("/health", "/v1/models"):
            status, headers, text = await _request("GET", shim.url + path)
            assert status == 503 and headers["Retry-After"] == "1"
            assert_openai_error(json.loads(text), "not_ready")
        assert json.loads((await _request("GET", shim.url + "/health"))[2])["status"] == "unavailable"
        status, _, text = await _request("HEAD", shim.url + "/health")
        assert status == 503 and text == ""
    finally:
        shim.stop()


# --- auth ----------------------------------------------------------------------------------


async def _auth_checks(shim: Shim) -> None:
    url = shim.url + "/v1/models"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "secret"},
                    {"Authorization": "Bearer secre"}, {"Authorization": "Basic c2VjcmV0"}):
        status, got, text = await _request("GET", url, headers=headers)
        assert status == 401, (headers, text)
        assert_openai_error(json.loads(text), "invalid_api_key")
        assert got["WWW-Authenticate"].startswith("Bearer")
    status, _, text = await _request("GET", url, headers={"Authorization": "Bearer secret"})
    assert status == 200, text
    # /health stays open for load balancers, saying only its status; /metrics needs the key.
    status, _, text = await _request("GET", shim.url + "/health")
    assert status == 200 and json.loads(text) == {"status": "ok"}, text
    status, _, text = await _request("GET", shim.url + "/metrics")
    assert status == 401, text
    status, _, _ = await _request("GET", shim.url + "/metrics", headers={"Authorization": "Bearer secret"})
    assert status == 200


async def test_api_key_from_the_command_line(secure_shim):
    await _auth_checks(secure_shim)
    with OpenAI(base_url=secure_shim.url + "/v1", api_key="wrong", max_retries=0) as client:
        with pytest.raises(AuthenticationError) as info:
            client.audio.transcriptions.create(model="whisper-1", file=FOX_FILES["wav"])
        assert_openai_error(info.value.response.json(), "invalid_api_key")
    with OpenAI(base_url=secure_shim.url + "/v1", api_key="secret", max_retries=0, timeout=120) as client:
        result = client.audio.transcriptions.create(model="whisper-1", file=FOX_FILES["wav"])
    assert word_recall(FOX_TEXT, result.text) >= 0.8


async def test_api_key_from_the_environment(fw_stack):
    shim = Shim(fw_stack.daemon.socket, env={"WHISPERD_API_KEY": "secret"})
    try:
        await _auth_checks(shim)
    finally:
        shim.stop()


async def test_api_key_from_a_file(fw_stack, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("secret\n")
    shim = Shim(fw_stack.daemon.socket, "--api-key-file", str(key_file))
    try:
        await _auth_checks(shim)
    finally:
        shim.stop()


# --- CORS ----------------------------------------------------------------------------------


PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}


async def test_cors_is_off_by_default(fw_stack):
    status, headers, text = await _request("OPTIONS", fw_stack.url + "/v1/audio/transcriptions",
                                           headers={"Origin": "http://a.example", **PREFLIGHT})
    # A web page is not a client of this server unless its origin is listed (shim/guard.py).
    assert status == 403 and "Access-Control-Allow-Origin" not in headers
    assert_openai_error(json.loads(text), "origin_not_allowed")
    status, headers, _ = await _request("GET", fw_stack.url + "/health", headers={"Origin": "http://a.example"})
    assert status == 403 and "Access-Control-Allow-Origin" not in headers


async def test_cors_for_listed_origins_only(secure_shim):
    url = secure_shim.url + "/v1/audio/transcriptions"
    # A preflight carries no key: it is answered before auth.
    status, headers, _ = await _request("OPTIONS", url, headers={"Origin": "http://a.example", **PREFLIGHT})
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == "http://a.example"
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert headers["Access-Control-Allow-Headers"].lower() == "authorization,content-type"
    assert "Origin" in headers["Vary"]
    status, headers, _ = await _request("OPTIONS", url, headers={"Origin": "http://b.example", **PREFLIGHT})
    assert status != 204 and "Access-Control-Allow-Origin" not in headers
    # Actual requests: the header for the listed origin, on successes and errors alike.
    status, headers, _ = await _request("GET", secure_shim.url + "/v1/models", headers={
        "Origin": "http://a.example", "Authorization": "Bearer secret"})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "http://a.example"
    status, headers, _ = await _request("GET", secure_shim.url + "/v1/models", headers={"Origin": "http://a.example"})
    assert status == 401 and headers["Access-Control-Allow-Origin"] == "http://a.example"
    status, headers, _ = await _request("GET", secure_shim.url + "/health", headers={"Origin": "http://b.example"})
    assert status == 403 and "Access-Control-Allow-Origin" not in headers


# --- health and metrics ----------------------------------------------------------------------


async def test_health_get_and_head(fw_stack):
    status, headers, text = await _request("GET", fw_stack.url + "/health")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    health = json.loads(text)
    assert health["status"] == "ok"
    assert health["model"] == "tiny.en" and health["engine"] == "faster-whisper" and health["device"] == "cpu"
    assert isinstance(health["queue"], int) and health["workers"]["hot"] == 1
    status, headers, text = await _request("HEAD", fw_stack.url + "/health")
    assert status == 200 and text == "" and headers["Content-Type"].startswith("application/json")


async def test_metrics_in_prometheus_format(fw_stack):
    form = aiohttp.FormData()
    form.add_field("file", FOX_FILES["ogg"].read_bytes(), filename="a.ogg")
    assert (await _request("POST", fw_stack.url + "/v1/audio/transcriptions", data=form))[0] == 200
    assert (await _request("GET", fw_stack.url + "/v1/nothing"))[0] == 404
    status, headers, text = await _request("GET", fw_stack.url + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    req = "whisperd_http_requests_total"
    assert samples[(req, (("route", "/v1/audio/transcriptions"), ("status", "200")))] >= 1
    assert samples[(req, (("route", "unmatched"), ("status", "404")))] >= 1
    assert samples[("whisperd_http_request_seconds_count", (("route", "/v1/audio/transcriptions"),))] >= 1
    assert samples[("whisperd_audio_seconds_count", ())] >= 1
    assert samples[("whisperd_audio_seconds_sum", ())] >= 3.5
    assert math.isfinite(samples[("whisperd_queue_depth", ())])
    assert samples[("whisperd_workers", (("kind", "hot"),))] == 1
    assert samples[("whisperd_daemon_up", ())] == 1


def test_cached_content_disposition_parser_answers_as_aiohttps_own():
    import warnings

    from aiohttp import multipart

    from shim.form import cache_aiohttp_disposition_parser

    cache_aiohttp_disposition_parser()
    cached = multipart.parse_content_disposition
    original = cached.uncached
    headers = ['form-data; name="file"; filename="a \\"b\\".wav"', "form-data; name=model",
               "form-data; filename*=UTF-8''%C3%A9t%C3%A9.mp3; name=file", 'form-data; name="x"; name="y"',
               "bad header;;", None, ""]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for h in headers:
            assert cached(h) == original(h), h
            first, second = cached(h), cached(h)
            assert first[1] is not second[1]  # each caller gets its own params
