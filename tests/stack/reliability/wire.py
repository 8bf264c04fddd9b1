"""Raw HTTP for hostile requests: bodies built byte by byte, sent with http.client.

aiohttp's and the openai SDK's clients refuse to send most of what a broken or
hostile client sends (a NUL in a file name, a wrong boundary, duplicate fields),
so the bad-input tests write the bytes themselves.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

TRANSCRIBE = "/v1/audio/transcriptions"
BOUNDARY = "rel-boundary-7f3a"


@dataclass
class Part:
    name: str
    data: bytes | str
    filename: str | bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


def multipart(parts: list[Part], boundary: str = BOUNDARY, *, close: bool = True) -> bytes:
    """A multipart/form-data body; `filename` may be raw bytes (NULs, invalid UTF-8)."""
    out = bytearray()
    for p in parts:
        out += f"--{boundary}\r\n".encode()
        disposition = f'Content-Disposition: form-data; name="{p.name}"'.encode()
        if p.filename is not None:
            name = p.filename if isinstance(p.filename, bytes) else p.filename.encode()
            disposition += b'; filename="' + name + b'"'
        out += disposition + b"\r\n"
        for k, v in p.headers.items():
            out += f"{k}: {v}\r\n".encode()
        out += b"\r\n" + (p.data.encode() if isinstance(p.data, str) else p.data) + b"\r\n"
    if close:
        out += f"--{boundary}--\r\n".encode()
    return bytes(out)


def audio_form(audio: bytes, filename: str | bytes = "a.wav", **fields: str) -> tuple[dict[str, str], bytes]:
    """Headers and body of an ordinary upload: `file` plus text fields."""
    parts = [Part(k, v) for k, v in fields.items()] + [Part("file", audio, filename)]
    return {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}, multipart(parts)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error(self) -> dict[str, Any]:
        return self.json()["error"]


def post(url: str, body: bytes, headers: dict[str, str], *, path: str = TRANSCRIBE,
         timeout: float = 120.0) -> Reply:
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.putrequest("POST", path, skip_accept_encoding=True)
        sent = {k.lower() for k in headers}
        for k, v in headers.items():
            conn.putheader(k, v)
        if "content-length" not in sent and "transfer-encoding" not in sent:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        conn.send(body)
        r = conn.getresponse()
        return Reply(r.status, {k: v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def upload(url: str, audio: bytes, filename: str | bytes = "a.wav", *, timeout: float = 120.0, **fields: str) -> Reply:
    headers, body = audio_form(audio, filename, **fields)
    return post(url, body, headers, timeout=timeout)


def assert_openai_error(reply: Reply, status: int, code: str, param: str | None = ...) -> dict[str, Any]:
    """OpenAI's error body with all four keys, the status, the code and (if given) the param."""
    assert reply.status == status, (reply.status, reply.body[:300])
    assert reply.headers.get("Content-Type", "").startswith("application/json"), reply.headers
    err = reply.error
    assert set(err) == {"message", "type", "param", "code"}, err
    assert err["code"] == code, err
    assert err["type"] == ("server_error" if status >= 500 else "invalid_request_error"), err
    assert isinstance(err["message"], str) and 0 < len(err["message"]) <= 500, err
    if param is not ...:
        assert err["param"] == param, err
    if status == 503:
        assert reply.headers.get("Retry-After", "").isdigit(), reply.headers
    return err
