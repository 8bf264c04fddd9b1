"""aiohttp routes speaking OpenAI's audio API, forwarding to the whisperd socket."""

from __future__ import annotations

import hmac
import json
import logging
import time
from typing import Any

from aiohttp import web

from shim.errors import HTTPError, error_response
from shim.form import AudioForm, read_form
from shim.metrics import CONTENT_TYPE_LATEST, Metrics
from whisperd.client import AsyncClient
from whisperd.config import ShimConfig
from whisperd.engines.base import Transcript
from whisperd.errors import NotReady, WhisperdError
from whisperd.formats import render_bytes

log = logging.getLogger("shim")

CLIENT = web.AppKey("client", AsyncClient)
CONFIG = web.AppKey("config", ShimConfig)
METRICS = web.AppKey("metrics", Metrics)
API_KEY = web.AppKey("api_key", str)
OPEN_PATHS = ("/health", "/metrics")


def _route_name(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


@web.middleware
async def errors_and_metrics(request: web.Request, handler: Any) -> web.StreamResponse:
    started = time.monotonic()
    metrics = request.app[METRICS]
    try:
        key = request.app[API_KEY]
        if key and request.path not in OPEN_PATHS and request.method != "OPTIONS":
            _check_key(request, key)
        response = await handler(request)
    except WhisperdError as err:
        response = error_response(err)
    except web.HTTPException as exc:
        # aiohttp's own 404/405/413: re-shaped so OpenAI clients can read them.
        code = {404: "not_found", 405: "method_not_allowed", 413: "audio_too_large"}.get(exc.status)
        err = HTTPError(code or "invalid_request", exc.reason or "error")
        response = error_response(err)
        response.set_status(exc.status)
    except Exception:
        log.exception("unexpected error on %s", request.path)
        response = error_response(WhisperdError("internal error in the HTTP shim"))
    route = _route_name(request)
    metrics.requests.labels(route, str(response.status)).inc()
    metrics.latency.labels(route).observe(time.monotonic() - started)
    return response


def _check_key(request: web.Request, key: str) -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    # compare_digest: the time taken does not tell how much of the key was right.
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), key.encode()):
        raise HTTPError("invalid_api_key", "Incorrect or missing API key: send 'Authorization: Bearer <key>'")


async def transcriptions(request: web.Request) -> web.StreamResponse:
    return await _audio(request, task="transcribe")


async def translations(request: web.Request) -> web.StreamResponse:
    return await _audio(request, task="translate")


async def _audio(request: web.Request, *, task: str) -> web.StreamResponse:
    config = request.app[CONFIG]
    form = await read_form(request, config.max_upload_bytes, translate=task == "translate")
    options = {
        "task": task,
        "language": form.language,
        "prompt": form.prompt,
        "temperature": form.temperature,
        "word_timestamps": form.words and form.response_format == "verbose_json",
    }
    client = request.app[CLIENT]
    if form.stream:
        return await _stream(request, client, form, options)
    reply = await client.transcribe(form.audio, model=form.model, **options)
    form.audio = b""
    transcript = Transcript.from_dict(reply["result"])
    request.app[METRICS].audio_seconds.observe(transcript.duration)
    body, content_type = render_bytes(transcript, form.response_format, words=options["word_timestamps"])
    return web.Response(body=body, headers={"Content-Type": content_type, **_worker_header(reply)})


def _worker_header(reply: dict[str, Any]) -> dict[str, str]:
    worker = reply.get("worker")
    return {"X-Whisperd-Worker": str(worker)} if worker else {}


def _sse(event: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(event, ensure_ascii=False).encode() + b"\n\n"


async def _stream(request: web.Request, client: AsyncClient, form: AudioForm,
                  options: dict[str, Any]) -> web.StreamResponse:
    """Server-Sent Events: a delta per decoded segment, then the full text.

    Headers go out with the first segment, so an error before any text (bad
    audio, unknown model) is still an ordinary OpenAI error response.
    """
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})

    async def on_frame(frame: dict[str, Any]) -> None:
        if frame.get("type") != "segment":
            return
        if not response.prepared:
            await response.prepare(request)
        await response.write(_sse({"type": "transcript.text.delta", "delta": frame["segment"]["text"]}))

    try:
        reply = await client.transcribe(form.audio, model=form.model, segments=True, on_frame=on_frame, **options)
    except WhisperdError as err:
        if not response.prepared:
            raise
        await response.write(_sse({"type": "error", "error": {"message": err.message, "code": err.code}}))
        await response.write_eof()
        return response
    text = Transcript.from_dict(reply["result"]).text
    if not response.prepared:
        for key, value in _worker_header(reply).items():
            response.headers[key] = value
        await response.prepare(request)
    await response.write(_sse({"type": "transcript.text.done", "text": text}))
    await response.write_eof()
    return response


async def models(request: web.Request) -> web.Response:
    served = await request.app[CLIENT].models()
    data = [{"id": "whisper-1", "object": "model", "created": 0, "owned_by": "whisperd"}]
    data += [{"id": m["id"], "object": "model", "created": 0, "owned_by": "whisperd"} for m in served]
    return web.json_response({"object": "list", "data": data})


async def health(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    try:
        status = await request.app[CLIENT].status()
    except WhisperdError as err:
        metrics.daemon_up.set(0)
        body = {"status": "unavailable", "error": err.message}
        return web.json_response(body, status=503, headers={"Retry-After": "1"})
    metrics.daemon_up.set(1)
    metrics.queue.set(status.get("queue", 0))
    for kind, count in (status.get("workers") or {}).items():
        metrics.workers.labels(kind).set(count)
    ok = status.get("status") == "ready"
    return web.json_response({**status, "status": "ok" if ok else status.get("status")},
                             status=200 if ok else 503)


async def metrics_endpoint(request: web.Request) -> web.Response:
    try:
        await health(request)  # refresh the daemon gauges
    except Exception:
        pass
    return web.Response(body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_app(config: ShimConfig) -> web.Application:
    app = web.Application(middlewares=[errors_and_metrics], client_max_size=config.max_upload_bytes + (1 << 20))
    app[CONFIG] = config
    app[METRICS] = Metrics()
    app[API_KEY] = config.resolved_api_key()
    app[CLIENT] = AsyncClient(config.socket, size=config.connections)
    app.router.add_post("/v1/audio/transcriptions", transcriptions)
    app.router.add_post("/v1/audio/translations", translations)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)  # GET also answers HEAD
    app.router.add_get("/metrics", metrics_endpoint)

    async def close_client(app: web.Application) -> None:
        await app[CLIENT].close()

    app.on_cleanup.append(close_client)
    return app


__all__ = ["build_app", "NotReady"]
