"""One table: error code → HTTP status and OpenAI's error type.

Every error body has all four keys OpenAI clients read:
`{"error": {"message", "type", "param", "code"}}`. Codes come from the daemon
(`whisperd.core.errors`) or from the shim itself (`HTTPError`); aiohttp's own
exceptions (unknown path, wrong method) are mapped through `http_exception_error`.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from whisperd.core.errors import WhisperdError

# code: (HTTP status, OpenAI error type)
STATUS_BY_CODE: dict[str, tuple[int, str]] = {
    "invalid_request": (400, "invalid_request_error"),
    "invalid_parameter": (400, "invalid_request_error"),
    "unsupported_for_model": (400, "invalid_request_error"),
    "audio_decode_failed": (400, "invalid_request_error"),
    "audio_empty": (400, "invalid_request_error"),
    "audio_too_long": (400, "invalid_request_error"),
    "invalid_api_key": (401, "invalid_request_error"),
    "origin_not_allowed": (403, "invalid_request_error"),  # a web page outside cors_origins (shim/guard.py)
    "model_not_found": (404, "invalid_request_error"),
    "not_found": (404, "invalid_request_error"),
    "method_not_allowed": (405, "invalid_request_error"),
    "audio_too_large": (413, "invalid_request_error"),
    "frame_too_large": (413, "invalid_request_error"),
    "unsupported_media_type": (415, "invalid_request_error"),
    "host_not_allowed": (421, "invalid_request_error"),  # Misdirected Request: a Host we do not answer to
    "not_ready": (503, "server_error"),
    "overloaded": (503, "server_error"),
    "shutting_down": (503, "server_error"),
    "upload_timeout": (408, "invalid_request_error"),  # was 'request_timeout' (setting upload_timeout)
    "transcript_timeout": (504, "server_error"),  # was 'timeout' (setting transcript_timeout)
}
# Anything else (worker_failed, engine_error, internal_error, a newer daemon's code).
DEFAULT_STATUS = (500, "server_error")

# aiohttp's HTTPException status → our code, for errors the router raises itself.
CODE_BY_HTTP_STATUS = {
    404: "not_found",
    405: "method_not_allowed",
    413: "audio_too_large",
    415: "unsupported_media_type",
}


class HTTPError(WhisperdError):
    """An error raised by the shim itself (auth, routing, upload limits, form fields)."""

    def __init__(self, code: str, message: str, *, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.code = code


def error_body(message: str, type_: str, param: str | None, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_dict(err: WhisperdError) -> dict[str, Any]:
    """The body for `err` (also sent as an SSE `error` event mid-stream)."""
    _, type_ = STATUS_BY_CODE.get(err.code, DEFAULT_STATUS)
    return error_body(err.message, type_, err.param, err.code or "server_error")


def error_response(err: WhisperdError, *, status: int | None = None,
                   headers: dict[str, str] | None = None) -> web.Response:
    status = status or STATUS_BY_CODE.get(err.code, DEFAULT_STATUS)[0]
    hdrs = dict(headers or {})
    if status == 503:
        hdrs.setdefault("Retry-After", "1")
    if status == 401:
        hdrs.setdefault("WWW-Authenticate", 'Bearer realm="whisperd"')
    return web.Response(
        status=status,
        body=json.dumps(error_dict(err), ensure_ascii=False).encode(),
        content_type="application/json",
        headers=hdrs,
    )


def http_exception_error(exc: web.HTTPException, method: str, path: str) -> web.Response:
    """aiohttp's own 404/405/413... re-shaped so OpenAI clients can read them."""
    code = CODE_BY_HTTP_STATUS.get(exc.status) or ("invalid_request" if exc.status < 500 else "server_error")
    if exc.status == 404:
        message = f"Unknown path {path[:200]!r}: this server serves /v1/audio/transcriptions, " \
                  "/v1/audio/translations, /v1/models, /health and /metrics."
    elif exc.status == 405:
        allowed = exc.headers.get("Allow", "")
        message = f"Method {method} is not allowed on {path[:200]}" + (f" (allowed: {allowed})" if allowed else "")
    else:
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else (exc.reason or "error")
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    return error_response(HTTPError(code, message), status=exc.status, headers=headers)
