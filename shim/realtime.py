"""`GET /v1/realtime?intent=transcription`: OpenAI's Realtime transcription over a WebSocket.

One WebSocket is one `RealtimeSession`; its audio goes to the daemon's live stream
(`whisperd.client.live.LiveStream`), opened on the first append after the last
settings change and restarted (between utterances) when the format, VAD, model,
language or prompt change. The daemon's events become OpenAI's, per utterance
(one conversation item, `item_...`)::

    daemon            →  client
    speech_started       input_audio_buffer.speech_started {audio_start_ms, item_id}
    partial (stable ↑)   conversation.item.input_audio_transcription.delta {item_id, delta}
    speech_stopped       input_audio_buffer.speech_stopped {audio_end_ms, item_id}
    final                input_audio_buffer.committed, conversation.item.added + .done (GA) or
                         .created (beta), the last delta, ….transcription.completed {transcript, usage}
    error in a decode    ….transcription.failed for the item, and an `error`

Deltas come while the person speaks, before the item is committed: the point of
doing this (OpenAI's whisper-1 sends the text only after the commit). A bad client
event gets an `error` event and changes nothing; the socket closes only when the
daemon cannot serve at all (not running, or its `max_live_sessions` reached).

Back-pressure: an append is read only after the one before it reached the daemon's
socket, so a client sending faster than real time waits on TCP, not on our memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from shim import realtime_events as rt
from shim.errors import DEFAULT_STATUS, STATUS_BY_CODE, HTTPError
from whisperd.client import AsyncClient
from whisperd.client.live import LiveStream
from whisperd.core import live
from whisperd.core.errors import WhisperdError

log = logging.getLogger("shim.realtime")

# aiohttp closes the socket (1009) past this; between MAX_EVENT_BYTES and it we answer an `error`.
MAX_MESSAGE_BYTES = 2 * rt.MAX_EVENT_BYTES
HEARTBEAT_S = 30.0  # a ping every 30 s: a client gone without a FIN is noticed, its stream closed
# Errors after which the daemon cannot serve this session at all: say so, then close.
FATAL_CODES = {"not_ready": WSCloseCode.TRY_AGAIN_LATER, "shutting_down": WSCloseCode.GOING_AWAY,
               "overloaded": WSCloseCode.TRY_AGAIN_LATER}


def _error_type(code: str) -> str:
    return STATUS_BY_CODE.get(code, DEFAULT_STATUS)[1]


def daemon_error_event(err: WhisperdError, client_event_id: str | None = None) -> dict[str, Any]:
    return rt.error_event(err.code, err.message, param=err.param, type_=_error_type(err.code),
                          client_event_id=client_event_id)


@dataclass
class Item:
    """One utterance of one daemon stream, as the conversation item it becomes."""

    id: str = field(default_factory=lambda: rt.new_id("item"))
    text: rt.ItemText = field(default_factory=rt.ItemText)
    heard: bool = False  # the client has seen its id (speech_started or a delta)
    cleared: bool = False  # input_audio_buffer.clear dropped it: no more events for it
    done: bool = False


class DaemonStream:
    """One daemon live stream and the task that turns its events into the client's."""

    def __init__(self, session: "RealtimeSession", stream: LiveStream, offset_ms: float) -> None:
        self.session = session
        self.live = stream
        self.offset_ms = offset_ms  # session audio before this stream began: its times are relative
        self.items: dict[int, Item] = {}
        self.failed = False
        self.pump = asyncio.ensure_future(self._pump())

    def item(self, utterance: int) -> Item:
        return self.items.setdefault(utterance, Item())

    def clear_open_items(self) -> None:
        for item in self.items.values():
            if not item.done:
                item.cleared = True

    async def _pump(self) -> None:
        try:
            while (event := await self.live.next_event()) is not None:
                await self._forward(event)
        except WhisperdError as err:
            self.failed = True
            if not self.session.closing:
                await self._failed(err)
        except Exception:
            self.failed = True
            log.exception("realtime session %s: forwarding the daemon's events failed", self.session.id)
        finally:
            self.session.retiring.discard(self)
            await self.live.close()

    async def _forward(self, event: live.LiveEvent) -> None:
        send = self.session.send
        if isinstance(event, live.SpeechStarted):
            item = self.item(event.utterance)
            item.heard = True
            await send(rt.server_event("input_audio_buffer.speech_started", item_id=item.id,
                                       audio_start_ms=round(self.offset_ms + event.audio_ms)))
        elif isinstance(event, live.Partial):
            item = self.item(event.utterance)
            delta = "" if item.cleared else item.text.grow(event.stable_text)
            if delta:
                item.heard = True
                await send(self._delta(item, delta))
        elif isinstance(event, live.SpeechStopped):
            item = self.item(event.utterance)
            if item.cleared:
                return
            end_ms = self.offset_ms + event.audio_ms
            self.session.buffer_from_ms = max(self.session.buffer_from_ms, end_ms)  # the server commits it
            await send(rt.server_event("input_audio_buffer.speech_stopped", item_id=item.id,
                                       audio_end_ms=round(end_ms)))
        elif isinstance(event, live.Final):
            item = self.item(event.utterance)
            if not item.cleared:
                await self._final(item, event)
            item.done = True

    def _delta(self, item: Item, delta: str) -> dict[str, Any]:
        return rt.server_event("conversation.item.input_audio_transcription.delta", item_id=item.id,
                               content_index=0, delta=delta)

    async def _final(self, item: Item, final: live.Final) -> None:
        session, send = self.session, self.session.send
        previous, session.last_item_id = session.last_item_id, item.id
        await send(rt.server_event("input_audio_buffer.committed", item_id=item.id, previous_item_id=previous))
        if session.beta:
            await send(rt.server_event("conversation.item.created", item=rt.user_audio_item(item.id),
                                       previous_item_id=previous))
        else:
            for kind in ("conversation.item.added", "conversation.item.done"):
                await send(rt.server_event(kind, item=rt.user_audio_item(item.id), previous_item_id=previous))
        rest, joined = item.text.finish(final.text)
        if not joined:  # the daemon promises this never happens; if it does, say so where it shows
            log.warning("item %s: the final text does not start with the stable text sent as deltas", item.id)
        if rest:
            await send(self._delta(item, rest))
        await send(rt.server_event("conversation.item.input_audio_transcription.completed", item_id=item.id,
                                   content_index=0, transcript=final.text,
                                   usage={"type": "duration", "seconds": round(max(0.0, final.end - final.start), 3)}))

    async def _failed(self, err: WhisperdError) -> None:
        """The daemon ended the stream with an error: its items fail; fatal errors close the socket."""
        open_items = [i for i in self.items.values() if not i.done and not i.cleared and i.heard]
        for item in open_items:
            await self.session.send(rt.server_event(
                "conversation.item.input_audio_transcription.failed", item_id=item.id, content_index=0,
                error={"type": _error_type(err.code), "code": err.code, "message": err.message, "param": err.param}))
        if err.code in FATAL_CODES:
            await self.session.fail(err)
        elif err.code == "frame_timeout" and not open_items:
            log.debug("live stream idle past the daemon's live_idle_timeout; reopened at the next append")
        else:
            await self.session.send(daemon_error_event(err))


class RealtimeSession:
    def __init__(self, ws: web.WebSocketResponse, socket_path: str, client: AsyncClient, *, beta: bool) -> None:
        self.ws = ws
        self.socket_path = socket_path
        self.client = client
        self.beta = beta  # the client speaks the beta dialect (header, subprotocol or its last update)
        self.id = rt.new_id("sess")
        self.settings = rt.TranscriptionSettings()
        self.stream: DaemonStream | None = None
        self.retiring: set[DaemonStream] = set()  # ended after a settings change, still finishing
        self.audio_ms = 0.0  # audio appended in this session
        self.buffer_from_ms = 0.0  # where the uncommitted buffer begins
        self.last_item_id: str | None = None
        self.closing = False
        self._send_lock = asyncio.Lock()

    # --- out ----------------------------------------------------------------------------

    async def send(self, event: dict[str, Any]) -> None:
        if self.ws.closed:
            return
        async with self._send_lock:  # one frame at a time, from the reader and the pumps
            try:
                await self.ws.send_str(json.dumps(event, ensure_ascii=False))
            except ConnectionError:
                pass  # the client left; the receive loop ends and cleans up

    def session_event(self, kind: str) -> dict[str, Any]:
        body = rt.beta_session(self.settings, self.id) if self.beta else rt.ga_session(self.settings, self.id)
        return rt.server_event(kind, session=body)

    async def fail(self, err: WhisperdError, client_event_id: str | None = None) -> None:
        """The daemon cannot serve this session: an `error`, then the close, with the reason."""
        await self.send(daemon_error_event(err, client_event_id))
        await self.close(FATAL_CODES.get(err.code, WSCloseCode.INTERNAL_ERROR), err.message)

    async def close(self, code: int, reason: str) -> None:
        self.closing = True
        # A close reason is at most 123 bytes.
        await self.ws.close(code=code, message=reason.encode()[:123])

    # --- in -----------------------------------------------------------------------------

    async def run(self) -> None:
        await self.send(self.session_event("transcription_session.created" if self.beta else "session.created"))
        try:
            async for message in self.ws:
                if message.type == WSMsgType.TEXT:
                    await self.on_text(message.data)
                elif message.type == WSMsgType.BINARY:
                    await self.send(rt.error_event("invalid_value", "Binary messages are not supported: send "
                                                   "JSON events as text (audio base64-encoded in them)."))
                if self.closing:
                    break
        finally:
            self.closing = True
            await self.close_streams()

    async def on_text(self, text: str) -> None:
        event: rt.ClientEvent | None = None
        try:
            event = rt.parse_client_event(text)
            await self.dispatch(event)
        except rt.RealtimeError as err:
            await self.send(err.event(event.event_id if event else None))
        except WhisperdError as err:
            if err.code in FATAL_CODES:
                await self.fail(err, event.event_id if event else None)
            else:
                await self.send(daemon_error_event(err, event.event_id if event else None))

    async def dispatch(self, event: rt.ClientEvent) -> None:
        kind = event.type
        if kind in ("session.update", "transcription_session.update"):
            beta = kind == "transcription_session.update"
            if "session" not in event.body:
                raise rt.RealtimeError("missing_required_parameter", "Missing required parameter: 'session'.",
                                       param="session")
            parse = rt.parse_beta_session if beta else rt.parse_ga_session
            settings = parse(event.body["session"], self.settings)
            await self.check_model(settings, beta)
            self.beta = beta
            await self.apply(settings)
            await self.send(self.session_event("transcription_session.updated" if beta else "session.updated"))
        elif kind == "input_audio_buffer.append":
            data = rt.audio_of(event)
            if data:
                await self.append(data)
        elif kind == "input_audio_buffer.commit":
            buffered = self.audio_ms - self.buffer_from_ms
            if buffered < rt.MIN_COMMIT_MS or self.stream is None:
                raise rt.commit_empty(max(0.0, buffered))
            await self.stream.live.commit()
            self.buffer_from_ms = self.audio_ms
        elif kind == "input_audio_buffer.clear":
            if self.stream is not None and not self.stream.failed:
                self.stream.clear_open_items()
                await self.stream.live.clear()
            self.buffer_from_ms = self.audio_ms
            await self.send(rt.server_event("input_audio_buffer.cleared"))

    async def check_model(self, new: rt.TranscriptionSettings, beta: bool) -> None:
        """Refuse an unknown model, or a language the model cannot hear, at the update that names it."""
        if (new.model, new.language) == (self.settings.model, self.settings.language):
            return
        where = "session.input_audio_transcription" if beta else "session.audio.input.transcription"
        served = await self.client.models()
        entry = next((m for m in served if (m.default if new.model is None else m.id == new.model)), None)
        if entry is None:
            names = ", ".join([*rt.REALTIME_DEFAULT_ALIASES, *(m.id for m in served)])
            raise rt.RealtimeError("model_not_found", f"The model {new.model_name[:60]!r} is not served here "
                                   f"(served: {names})", param=f"{where}.model")
        if not entry.multilingual and new.language not in (None, "en"):
            raise rt.RealtimeError("unsupported_for_model", f"model {entry.id} is English-only; it cannot "
                                   f"transcribe language {new.language!r} (name a multilingual model, e.g. 'base')",
                                   param=f"{where}.language")

    async def apply(self, new: rt.TranscriptionSettings) -> None:
        """New settings; a daemon stream that cannot carry them ends (its open speech gets its final)."""
        old, self.settings = self.settings, new
        if self.stream is None or old.stream_key() == new.stream_key():
            return
        stream, self.stream = self.stream, None
        self.retiring.add(stream)
        try:
            await stream.live.end()
        except WhisperdError:
            stream.pump.cancel()  # it already failed (and said so)

    async def append(self, data: bytes) -> None:
        for attempt in (1, 2):
            stream = await self.open_stream()
            try:
                await stream.live.send_audio(data)
                break
            except WhisperdError:
                # The stream died (its pump tells the client why); one more try on a fresh one.
                await asyncio.gather(stream.pump, return_exceptions=True)
                if self.closing or attempt == 2:
                    return
        self.audio_ms += len(data) / self.settings.bytes_per_ms

    async def open_stream(self) -> DaemonStream:
        if self.stream is not None and not self.stream.failed:
            return self.stream
        s = self.settings
        stream = await LiveStream.open(self.socket_path, model=s.model, language=s.language, prompt=s.prompt,
                                       sample_rate=s.sample_rate, encoding=s.encoding, vad=s.vad, partials=True)
        self.stream = DaemonStream(self, stream, self.audio_ms)
        self.buffer_from_ms = max(self.buffer_from_ms, self.audio_ms)
        return self.stream

    async def close_streams(self) -> None:
        """The client left (or we close): every daemon stream goes, so the daemon holds nothing for it."""
        streams = [*self.retiring, *([self.stream] if self.stream else [])]
        self.stream = None
        for stream in streams:
            stream.pump.cancel()
        await asyncio.gather(*(s.pump for s in streams), return_exceptions=True)
        await asyncio.gather(*(s.live.close() for s in streams), return_exceptions=True)


class RealtimeFront:
    """The route's handler and the open sessions (closed on shutdown)."""

    def __init__(self, socket_path: str, client: AsyncClient) -> None:
        self.socket_path = socket_path
        self.client = client
        self.sessions: set[RealtimeSession] = set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        # The Host/Origin guard and the API key (header or subprotocol) were checked by the middleware.
        offered = rt.offered_subprotocols(request.headers.get("Sec-WebSocket-Protocol"))
        chosen = rt.chosen_subprotocol(offered)
        ws = web.WebSocketResponse(protocols=(chosen,) if chosen else (), max_msg_size=MAX_MESSAGE_BYTES,
                                   heartbeat=HEARTBEAT_S)
        if not ws.can_prepare(request).ok:
            raise HTTPError("invalid_request", "GET /v1/realtime is a WebSocket endpoint: connect with a WebSocket "
                            "client (ws://HOST:PORT/v1/realtime?intent=transcription)")
        await ws.prepare(request)
        beta = "realtime=v1" in request.headers.get("OpenAI-Beta", "") or rt.BETA_SUBPROTOCOL in offered
        session = RealtimeSession(ws, self.socket_path, self.client, beta=beta)
        intent = request.query.get("intent")
        if intent != "transcription":
            # The URL's `model` names a conversation model in OpenAI's other sessions; we only transcribe.
            await session.send(rt.error_event(
                "invalid_intent", f"This server serves transcription sessions only: connect to "
                f"/v1/realtime?intent=transcription (got intent {str(intent)[:40]!r}).", param="intent"))
            await session.close(WSCloseCode.POLICY_VIOLATION, "only intent=transcription is served here")
            return ws
        self.sessions.add(session)
        try:
            await session.run()
        except Exception:
            log.exception("realtime session %s failed", session.id)
            await session.close(WSCloseCode.INTERNAL_ERROR, "internal error in the shim")
        finally:
            self.sessions.discard(session)
        return ws

    async def close_all(self, app: web.Application) -> None:
        for session in list(self.sessions):
            await session.close(WSCloseCode.GOING_AWAY, "the server is shutting down")
