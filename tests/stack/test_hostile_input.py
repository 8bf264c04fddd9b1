"""Issue 15, findings 1-3 and 8: forms that amplify, web pages and foreign names, the key.

The real `whisperd` (null engine: no model, starts in a second) and the real
`whisperd-shim` as child processes; memory is read from /proc.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import aiohttp
import pytest

from testing.stack import ROOT, Daemon, Shim, free_port
from tests.stack.reliability.media import tone, wav
from tests.stack.reliability.probes import hwm_mb, rss_mb

BOUNDARY = "hostile-7f3a"
WAV = wav(tone(1.0))
ERROR_KEYS = {"message", "type", "param", "code"}


@pytest.fixture(scope="module")
def daemon():
    d = Daemon("--engine", "null", "--max-cold-workers", "0")
    yield d
    d.stop()


@pytest.fixture(scope="module")
def shim(daemon):
    s = Shim(daemon.socket)
    yield s
    s.stop()


def part(name: str, value: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"


async def post_chunked(url: str, parts, *, headers: dict[str, str] | None = None) -> tuple[int, dict, int]:
    """POST the parts as a chunked multipart body (no Content-Length); (status, body, bytes sent by then)."""
    sent = 0
    answered = False

    async def body():
        nonlocal sent
        for p in parts:
            if answered:
                return
            sent += len(p)
            yield p
        yield f"--{BOUNDARY}--\r\n".encode()

    hdrs = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", **(headers or {})}
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/v1/audio/transcriptions", data=body(), headers=hdrs) as r:
            answered = True
            sent_then = sent
            assert "Content-Length" not in r.request_info.headers
            return r.status, await r.json(content_type=None), sent_then


def assert_error(body: dict, code: str, param: str | None = None) -> None:
    assert set(body["error"]) == ERROR_KEYS, body
    assert body["error"]["code"] == code, body
    if param is not None:
        assert body["error"]["param"] == param, body


# --- 1. form fields within the limit and the budget --------------------------------------------


async def test_repeated_granularities_cannot_amplify_memory(shim):
    """Before: every word of every timestamp_granularities[] part went into a list (5 bytes in,
    ~64 held), with no cap on parts: 60 MiB of fields took the shim to 932 MB."""
    words = b"word " * (60 * 1024 // 5)  # 60 KiB: under the per-field limit
    offered = 500  # 30 MiB
    before = rss_mb(shim.proc.pid)
    started = time.monotonic()
    status, body, sent = await post_chunked(
        shim.url, (part("timestamp_granularities[]", words) for _ in range(offered)))
    elapsed = time.monotonic() - started
    grew = hwm_mb(shim.proc.pid) - before
    print(f"\nrepeated field: {status} after {sent >> 10} KiB of {offered * 60 >> 10} MiB offered, "
          f"{elapsed:.2f} s; shim RSS {before:.0f} MB, peak +{grew:.0f} MB")
    assert status == 400
    assert_error(body, "invalid_parameter", "timestamp_granularities[]")
    assert "repeated" in body["error"]["message"]
    assert sent < 8 << 20, sent
    assert grew < 40, f"the shim's peak RSS grew {grew:.0f} MB"


async def test_many_distinct_fields_are_capped(shim):
    status, body, sent = await post_chunked(shim.url, (part(f"x{i}", b"1") for i in range(10_000)))
    assert status == 400
    assert_error(body, "invalid_request")
    assert "more than 64 fields" in body["error"]["message"]


async def test_text_fields_count_against_the_total_limit_on_a_chunked_body(daemon):
    """Before: only the file was held to max_upload_bytes; 40 text fields of 60 KiB each (2.4 MiB)
    went through a 1 MiB limit, and a chunked body was never held to the total at all."""
    limit = 1 << 20
    s = Shim(daemon.socket, "--max-upload-bytes", str(limit))
    try:
        parts = [part(f"field{i}", b"y" * (60 * 1024)) for i in range(40)] + [part("file", WAV, "a.wav")]
        status, body, sent = await post_chunked(s.url, parts)
    finally:
        s.stop()
    assert status == 413
    assert_error(body, "audio_too_large", "file")


# --- 2. web pages and foreign names ---------------------------------------------------------------


async def transcribe(url: str, headers: dict[str, str]) -> tuple[int, dict]:
    form = aiohttp.FormData()
    form.add_field("file", WAV, filename="a.wav")
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/v1/audio/transcriptions", data=form, headers=headers) as r:
            return r.status, await r.json(content_type=None)


def served(daemon: Daemon) -> int:
    from testing.stack import status
    return status(daemon.socket).served


async def test_a_foreign_web_page_is_refused_before_anything_is_transcribed(daemon, shim):
    before = served(daemon)
    code, body = await transcribe(shim.url, {"Origin": "http://evil.example"})
    assert code == 403
    assert_error(body, "origin_not_allowed")
    code, body = await transcribe(shim.url, {"Origin": "null"})  # a sandboxed frame or a file:// page
    assert code == 403
    assert served(daemon) == before
    # No Origin (SDKs, curl, Open-WebUI's server side): as before.
    code, body = await transcribe(shim.url, {})
    assert code == 200 and "text" in body
    async with aiohttp.ClientSession() as session:  # a preflight from it gets no CORS grant either
        async with session.options(shim.url + "/v1/audio/transcriptions", headers={
                "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}) as r:
            assert r.status == 403 and "Access-Control-Allow-Origin" not in r.headers


async def test_a_listed_origin_is_served(daemon):
    s = Shim(daemon.socket, "--cors-origins", "http://app.example")
    try:
        code, body = await transcribe(s.url, {"Origin": "http://app.example"})
    finally:
        s.stop()
    assert code == 200 and "text" in body


async def test_a_rebound_name_is_refused_and_loopback_names_are_not(daemon, shim):
    port = shim.port
    code, body = await transcribe(shim.url, {"Host": f"rebind.attacker.example:{port}"})
    assert code == 421
    assert_error(body, "host_not_allowed")
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST", f"192.168.1.9:{port}"):
        code, body = await transcribe(shim.url, {"Host": host})
        assert code == 200, (host, body)


async def test_allowed_hosts_adds_a_reverse_proxys_name(daemon):
    s = Shim(daemon.socket, "--allowed-hosts", "stt.example.org")
    try:
        ok, _ = await transcribe(s.url, {"Host": "stt.example.org"})
        refused, _ = await transcribe(s.url, {"Host": "other.example.org"})
    finally:
        s.stop()
    assert (ok, refused) == (200, 421)


# --- 3. the key file ----------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_an_empty_api_key_file_is_a_config_error(tmp_path, content):
    """Before: an empty file meant no key at all - authentication silently off."""
    key_file = tmp_path / "key"
    key_file.write_text(content)
    proc = subprocess.run([sys.executable, "-m", "shim", "--config", "/dev/null", "--socket", "/nonexistent.sock",
                           "--port", str(free_port()), "--api-key-file", str(key_file)],
                          capture_output=True, text=True, timeout=30, cwd=ROOT,
                          env={k: v for k, v in os.environ.items() if not k.startswith("WHISPERD_")})
    assert proc.returncode == 2, proc.stderr
    assert str(key_file) in proc.stderr and "empty" in proc.stderr


# --- 8. what /health and /metrics say without the key ---------------------------------------------


async def test_health_and_metrics_detail_follow_the_key(daemon):
    s = Shim(daemon.socket, "--api-key", "secret")
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(s.url + "/health") as r:
                bare = (r.status, await r.json())
            async with session.get(s.url + "/health", headers={"Authorization": "Bearer secret"}) as r:
                full = (r.status, await r.json())
            async with session.get(s.url + "/metrics") as r:
                metrics_without = (r.status, await r.json(content_type=None))
            async with session.get(s.url + "/metrics", headers={"Authorization": "Bearer secret"}) as r:
                metrics_with = (r.status, await r.text())
    finally:
        s.stop()
    assert bare == (200, {"status": "ok"})
    assert full[0] == 200 and full[1]["version"] and full[1]["lanes"]
    assert metrics_without[0] == 401
    assert_error(metrics_without[1], "invalid_api_key")
    assert metrics_with[0] == 200 and "whisperd_http_requests_total" in metrics_with[1]


def test_the_key_arrives_as_a_systemd_credential(daemon, tmp_path):
    """LoadCredential= in whisperd-shim.service: the key sits where only the service may read it."""
    (tmp_path / "whisperd-api-key").write_text("from-credential\n")
    s = Shim(daemon.socket, env={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    try:
        import urllib.request
        request = urllib.request.Request(s.url + "/v1/models")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        request.add_header("Authorization", "Bearer from-credential")
        with urllib.request.urlopen(request, timeout=10) as r:
            listing = json.loads(r.read())
    finally:
        s.stop()
    assert refused.value.code == 401
    assert listing["object"] == "list"
