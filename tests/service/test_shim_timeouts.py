"""The shim's two timeouts, in-process against a daemon that never answers.

`upload_timeout` bounds the client's upload (408 `upload_timeout`), `transcript_timeout`
the wait for the daemon (504 `transcript_timeout`); both in OpenAI's error shape.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import tempfile

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from shim.app import build_app
from shim.config import SHIM_SETTINGS, ShimConfig
from whisperd.core.settings import build

BOUNDARY = "timeoutboundary"


class SilentDaemon:
    """A Unix socket that takes requests and never answers; counts connections and hang-ups."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="wd-", dir="/tmp")
        self.path = os.path.join(self.dir, "w.sock")
        self.connections = 0
        self.bytes_received = 0
        self.hung_up = asyncio.Event()

    async def __aenter__(self) -> "SilentDaemon":
        self.server = await asyncio.start_unix_server(self._serve, self.path)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        while chunk := await reader.read(65536):
            self.bytes_received += len(chunk)
        self.hung_up.set()  # the shim gave up and closed its side
        writer.close()


def shim_config(socket: str, **timeouts: float) -> ShimConfig:
    config = build(ShimConfig, SHIM_SETTINGS, "shim", {"socket": socket}, {}, "/dev/null")
    # Below the settings' 1 s floor, so the test takes milliseconds.
    return dataclasses.replace(config, **timeouts)


def multipart(audio: bytes) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
            f"Content-Type: audio/wav\r\n\r\n").encode() + audio + f"\r\n--{BOUNDARY}--\r\n".encode()


@pytest.fixture()
async def daemon():
    async with SilentDaemon() as d:
        yield d


async def test_a_stalled_upload_gets_408_upload_timeout_and_never_reaches_the_daemon(daemon):
    server = TestServer(build_app(shim_config(daemon.path, upload_timeout=0.2, transcript_timeout=30)))
    await server.start_server()
    try:
        body = multipart(b"RIFF" + b"\0" * 4000)
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write((f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                      f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n").encode() + body[:len(body) // 2])
        await writer.drain()  # ...and the rest never comes
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")))
        payload = await asyncio.wait_for(reader.readexactly(length), 10)
        writer.close()
    finally:
        await server.close()
    assert head.split(b" ", 2)[1] == b"408", head
    error = json.loads(payload)["error"]
    assert (error["code"], error["type"]) == ("upload_timeout", "invalid_request_error")
    assert set(error) == {"message", "type", "param", "code"}
    assert daemon.connections == 0


async def test_a_silent_daemon_gets_504_transcript_timeout_and_the_work_is_dropped(daemon):
    server = TestServer(build_app(shim_config(daemon.path, upload_timeout=30, transcript_timeout=0.2)))
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(server.make_url("/v1/audio/transcriptions"),
                                    data=multipart(b"RIFF" + b"\0" * 4000),
                                    headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}) as r:
                status, body = r.status, await r.json()
        # The shim closed its socket connection: the daemon would drop the request.
        await asyncio.wait_for(daemon.hung_up.wait(), 10)
    finally:
        await server.close()
    assert status == 504, body
    assert (body["error"]["code"], body["error"]["type"]) == ("transcript_timeout", "server_error")
    assert "transcript_timeout" in body["error"]["message"]
    assert daemon.connections == 1 and daemon.bytes_received > 4000  # the request did go out
