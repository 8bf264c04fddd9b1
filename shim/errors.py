"""One table: daemon error code → HTTP status and OpenAI's error type.

Every error body has all four keys OpenAI clients read:
`{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import json

from aiohttp import web

from whisperd.errors import WhisperdError

# code: (HTTP status, OpenAI error type)
STATUS_BY_CODE: dict[str, tuple[int, str]] = {
    "invalid_request": (400, "invalid_request_error"),
    "invalid_parameter": (400, "invalid_request_error"),
    "unsupported_for_model": (400, "invalid_request_error"),
    "audio_decode_failed": (400, "invalid_request_error"),
    "audio_empty": (400, "invalid_request_error"),
    "audio_too_long": (400, "invalid_request_error"),
    "audio_too_large": (413, "invalid_request_error"),
    "frame_too_large": (413, "invalid_request_error"),
    "model_not_found": (404, "invalid_request_error"),
    "invalid_api_key": (401, "invalid_request_error"),
    "not_found": (404, "invalid_request_error"),
    "method_not_allowed": (405, "invalid_request_error"),
    "not_ready": (503, "server_error"),
    "overloaded": (503, "server_error"),
    "shutting_down": (503, "server_error"),
    "timeout": (504, "server_error"),
}
DEFAULT_STATUS = (500, "server_error")


def error_body(message: str, type_: str, param: str | None, code: str | None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_response(err: WhisperdError, *, headers: dict[str, str] | None = None) -> web.Response:
    status, type_ = STATUS_BY_CODE.get(err.code, DEFAULT_STATUS)
    if status >= 500 and err.code not in STATUS_BY_CODE:
        code = err.code or "server_error"
    else:
        code = err.code
    hdrs = dict(headers or {})
    if status == 503:
        hdrs.setdefault("Retry-After", "1")
    return web.Response(
        status=status,
        body=json.dumps(error_body(err.message, type_, err.param, code)).encode(),
        content_type="application/json",
        headers=hdrs,
    )


class HTTPError(WhisperdError):
    """An error raised by the shim itself (auth, routing, upload limits)."""

    def __init__(self, code: str, message: str, *, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.code = code
