"""aiohttp routes speaking OpenAI's audio API, forwarding to the whisperd socket.

    POST /v1/audio/transcriptions   multipart (or Open-WebUI's JSON) → json|text|srt|vtt|verbose_json|SSE
    POST /v1/audio/translations     the same, task translate (into English)
    GET  /v1/models, /v1/models/{id}
    GET|HEAD /health                200 when this host can take work now, else 503 (shim/health.py)
    GET  /metrics                   Prometheus text
    GET  /v1/realtime               WebSocket: OpenAI Realtime transcription (`shim/realtime.py`)
    GET  /, /page/{name}            the page to try it in a browser (`shim/page/`)

Every error, including aiohttp's own 404/405, leaves as OpenAI's error body
(`shim/errors.py`). A request under a foreign Host or from a foreign web page is
refused before anything else (`shim/guard.py`). When an API key is set, `/health`
stays open but says only its status without the key (load balancers need no
more), and `/metrics` needs the key.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from typing import Any

from aiohttp import web

from shim.agent_check import agent_context
from shim.budget import Lease, UploadBudget
from shim.config import ShimConfig
from shim.cors import Cors, parse_origins
from shim.drain import DRAIN, Drain
from shim.errors import HTTPError, error_dict, error_response, http_exception_error
from shim.form import AudioForm, cache_aiohttp_disposition_parser, read_form
from shim.guard import Guard, parse_hosts
from shim.health import Health, health_body, health_state, read_status
from shim.metrics import CONTENT_TYPE_LATEST, Metrics
from shim.page import add_routes as add_page_routes
from shim.page import is_page_path
from shim.realtime import RealtimeFront
from shim.realtime_events import offered_subprotocols, subprotocol_key
from whisperd.client import AsyncClient
from whisperd.core.errors import WhisperdError
from whisperd.core.formats import render_bytes
from whisperd.core.model_names import DEFAULT_ALIASES
from whisperd.core.replies import DaemonStatus, ModelEntry, TranscribeResult

log = logging.getLogger("shim")

CLIENT = web.AppKey("client", AsyncClient)
CONFIG = web.AppKey("config", ShimConfig)
METRICS = web.AppKey("metrics", Metrics)
API_KEY = web.AppKey("api_key", str)
CORS = web.AppKey("cors", Cors)
BUDGET = web.AppKey("upload_budget", UploadBudget)
GUARD = web.AppKey("guard", Guard)
OPEN_PATHS = ("/health",)  # its detail still follows the key (`health`)


def _route_name(request: web.Request) -> str:
    # The route's pattern, never the raw path: a scanner must not blow up the label set.
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def errors_and_metrics(request: web.Request, handler: Any) -> web.StreamResponse:
    started = time.monotonic()
    metrics = request.app[METRICS]
    metrics.in_flight.inc()
    try:
        request.app[GUARD].check(request)
        response = request.app[CORS].preflight(request)
        if response is None:
            key = request.app[API_KEY]
            if key and not _open_path(request.path) and request.method != "OPTIONS":
                _check_key(request, key)
            response = await handler(request)
    except WhisperdError as err:
        response = error_response(err)
    except web.HTTPException as exc:
        response = http_exception_error(exc, request.method, request.path)
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        response = error_response(WhisperdError("internal error in the HTTP shim"))
    except asyncio.CancelledError:  # the client hung up (nginx's 499: client closed request)
        metrics.requests.labels(_route_name(request), "499").inc()
        raise
    finally:
        metrics.in_flight.dec()
    route = _route_name(request)
    metrics.requests.labels(route, str(response.status)).inc()
    metrics.latency.labels(route).observe(time.monotonic() - started)
    return response


def _open_path(path: str) -> bool:
    # The page holds no secret: the key is typed into it, so it must load without one.
    return path in OPEN_PATHS or is_page_path(path)


def _key_given(request: web.Request, key: str) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        # A browser's WebSocket cannot set headers: the SDKs send the key as a subprotocol.
        given = subprotocol_key(offered_subprotocols(request.headers.get("Sec-WebSocket-Protocol"))) or ""
        if not given:
            return False
    # compare_digest: the time taken does not tell how much of the key was right.
    return hmac.compare_digest(given.strip().encode(), key.encode())


def _check_key(request: web.Request, key: str) -> None:
    if not _key_given(request, key):
        raise HTTPError("invalid_api_key", "Incorrect or missing API key: send 'Authorization: Bearer <key>'")


# --- audio -------------------------------------------------------------------------------


async def transcriptions(request: web.Request) -> web.StreamResponse:
    return await _audio(request, task="transcribe")


async def translations(request: web.Request) -> web.StreamResponse:
    return await _audio(request, task="translate")


async def _audio(request: web.Request, *, task: str) -> web.StreamResponse:
    # The upload's bytes count against the shim-wide budget until the answer is out.
    with request.app[BUDGET].lease() as lease:
        return await _audio_within(request, task, lease)


async def _audio_within(request: web.Request, task: str, lease: Lease) -> web.StreamResponse:
    config = request.app[CONFIG]
    try:
        # Bounds the whole upload: a client trickling bytes cannot hold a request open.
        # (asyncio.timeout, not wait_for: no extra task, so a hang-up still cancels the handler.)
        async with asyncio.timeout(config.upload_timeout):
            form = await read_form(request, config.max_upload_bytes, translate=task == "translate", lease=lease)
    except TimeoutError:
        raise HTTPError("upload_timeout",
                        f"the upload was not complete within {config.upload_timeout:g} s (upload_timeout)") from None
    options = {
        "task": task,
        "language": form.language,
        "prompt": form.prompt,
        "temperature": form.temperature,
        "word_timestamps": form.words and form.response_format == "verbose_json",
        "chunking": form.chunking,
        "logprobs": form.logprobs,
    }
    if form.stream:
        return await _stream(request, form, options)
    audio, form.audio = form.audio, b""  # the only reference left travels to the daemon
    reply = await _transcribe(request, audio, form.model, options)
    transcript = reply.transcript
    request.app[METRICS].audio_seconds.observe(transcript.duration)
    body, content_type = render_bytes(transcript, form.response_format, words=options["word_timestamps"],
                                      logprobs=form.logprobs)
    return web.Response(body=body, headers={"Content-Type": content_type, **_worker_header(reply)})


async def _transcribe(request: web.Request, audio: bytes, model: str | None, options: dict[str, Any],
                      **stream: Any) -> TranscribeResult:
    timeout = request.app[CONFIG].transcript_timeout
    try:
        # Cancelled here (timeout or the HTTP client hung up), the socket client drops its
        # connection and the daemon drops the work: nobody transcribes for a client that left.
        return await asyncio.wait_for(request.app[CLIENT].transcribe(audio, model=model, **options, **stream),
                                      timeout)
    except asyncio.TimeoutError:
        raise HTTPError("transcript_timeout", f"no transcript after {timeout:g} s (transcript_timeout)") from None


def _worker_header(reply: TranscribeResult) -> dict[str, str]:
    return {"X-Whisperd-Worker": reply.worker} if reply.worker else {}


def _sse(event: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(event, ensure_ascii=False).encode() + b"\n\n"


async def _stream(request: web.Request, form: AudioForm, options: dict[str, Any]) -> web.StreamResponse:
    """Server-Sent Events: a delta per decoded segment, then the full text
    (each with its tokens' `logprobs` when include[]=logprobs asked for them).

    Headers go out with the first segment, so an error before any text (bad
    audio, unknown model) is still an ordinary OpenAI error response; an error
    after it is an `error` event with the same four keys.
    """
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",  # a reverse proxy must not hold the events back
    })

    async def on_frame(frame: dict[str, Any]) -> None:
        if frame.get("type") != "segment":
            return
        if not response.prepared:
            await response.prepare(request)
        delta = {"type": "transcript.text.delta", "delta": frame["segment"]["text"]}
        if form.logprobs:
            delta["logprobs"] = frame["segment"].get("logprobs") or []
        await response.write(_sse(delta))

    audio, form.audio = form.audio, b""
    try:
        reply = await _transcribe(request, audio, form.model, options, segments=True, on_frame=on_frame)
    except WhisperdError as err:
        if not response.prepared:
            raise
        await response.write(_sse({"type": "error", **error_dict(err)}))
        await response.write_eof()
        return response
    except ConnectionResetError:  # the client left mid-stream; its work was dropped with it
        return response
    except Exception:
        if not response.prepared:
            raise
        log.exception("stream failed after its first event")
        await response.write(_sse({"type": "error", **error_dict(WhisperdError("internal error in the HTTP shim"))}))
        await response.write_eof()
        return response
    transcript = reply.transcript
    request.app[METRICS].audio_seconds.observe(transcript.duration)
    if not response.prepared:  # no segment at all (silence): only the done event
        response.headers.update(_worker_header(reply))
        await response.prepare(request)
    done: dict[str, Any] = {"type": "transcript.text.done", "text": transcript.text}
    if form.logprobs:
        done["logprobs"] = [t.to_dict() for t in transcript.logprobs]
    await response.write(_sse(done))
    await response.write_eof()
    return response


# --- models, health, metrics -------------------------------------------------------------


def _model_object(model_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "whisperd", **extra}


def _model_list(served: list[ModelEntry]) -> list[dict[str, Any]]:
    """OpenAI's model objects, plus what the daemon knows: loaded now, multilingual, default."""
    data = []
    default = next((m for m in served if m.default), None)
    if default is not None:
        data.extend(_model_object(alias, alias_of=default.id, loaded=default.loaded,
                                  multilingual=default.multilingual)
                    for alias in DEFAULT_ALIASES)
    for m in served:
        data.append(_model_object(m.id, loaded=m.loaded, multilingual=m.multilingual, default=m.default))
    return data


async def models(request: web.Request) -> web.Response:
    served = await request.app[CLIENT].models()
    return web.json_response({"object": "list", "data": _model_list(served)})


async def model(request: web.Request) -> web.Response:
    wanted = request.match_info["model"]
    for item in _model_list(await request.app[CLIENT].models()):
        if item["id"] == wanted:
            return web.json_response(item)
    raise HTTPError("model_not_found", f"The model {wanted[:100]!r} does not exist here", param="model")


async def _daemon_status(app: web.Application) -> DaemonStatus | WhisperdError:
    status = await read_status(app[CLIENT])
    if isinstance(status, WhisperdError):
        app[METRICS].daemon_up.set(0)
    else:
        app[METRICS].observe_daemon(status)
    return status


async def _verdict(app: web.Application) -> tuple[Health, DaemonStatus | WhisperdError]:
    status = await _daemon_status(app)
    return health_state(status, app[DRAIN].draining), status


async def health(request: web.Request) -> web.Response:
    verdict, status = await _verdict(request.app)
    body = health_body(verdict, status)
    key = request.app[API_KEY]
    if key and not _key_given(request, key):
        # Version, models, worker PIDs and counts are for the key's holders; the status is for all.
        body = {"status": body["status"]}
    return web.json_response(body, status=verdict.http_status,
                             headers={"Retry-After": "1"} if not verdict.ok else None)


async def metrics_endpoint(request: web.Request) -> web.Response:
    await _daemon_status(request.app)  # refresh the daemon gauges
    request.app[METRICS].uploads_held.set(request.app[BUDGET].held)
    return web.Response(body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _health_now(app: web.Application) -> Health:
    return (await _verdict(app))[0]


def build_app(config: ShimConfig) -> web.Application:
    # The upload limit is enforced while reading the form (shim/form.py); client_max_size only
    # guards aiohttp's own whole-body readers, which no route uses.
    app = web.Application(middlewares=[errors_and_metrics], client_max_size=config.max_upload_bytes + (1 << 20))
    cache_aiohttp_disposition_parser()
    app[CONFIG] = config
    app[METRICS] = Metrics()
    app[API_KEY] = config.resolved_api_key()
    app[CORS] = Cors(parse_origins(config.cors_origins))
    app[GUARD] = Guard(config.host, parse_hosts(config.allowed_hosts), app[CORS])
    app[BUDGET] = UploadBudget(config.max_buffered_bytes)
    app[CLIENT] = AsyncClient(config.socket, size=config.connections)
    app.router.add_post("/v1/audio/transcriptions", transcriptions)
    app.router.add_post("/v1/audio/translations", translations)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/v1/models/{model}", model)
    app.router.add_get("/health", health)  # GET also answers HEAD
    app.router.add_get("/metrics", metrics_endpoint)
    realtime = RealtimeFront(config.socket, app[CLIENT])
    app.router.add_get("/v1/realtime", realtime.handle)
    app.on_shutdown.append(realtime.close_all)  # open WebSockets would hold the shutdown to its timeout
    add_page_routes(app)
    if app[CORS].enabled:
        app.on_response_prepare.append(app[CORS].on_response_prepare)
    app[DRAIN] = Drain()
    app.on_response_prepare.append(app[DRAIN].on_response_prepare)
    if config.agent_port:
        app.cleanup_ctx.append(agent_context(config.host, config.agent_port, lambda: _health_now(app)))

    async def close_client(app: web.Application) -> None:
        await app[CLIENT].close()

    app.on_cleanup.append(close_client)
    return app


__all__ = ["build_app"]
