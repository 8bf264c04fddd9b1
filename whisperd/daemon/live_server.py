"""The socket side of live sessions: a `stream` request's frames in, its events out.

At most `max_live_sessions` are open; past it a new one is refused with
`overloaded` (the connection stays usable). A session is bounded in every
direction: no frame from its client for `live_idle_timeout` closes it; it lasts
at most `live_max_seconds` of audio and of wall-clock time; an audio frame must
arrive within `frame_timeout` (plus a second per MiB); one audio frame is at most
`whisperd.core.live.MAX_CHUNK` bytes, and a client that stops reading our events
is cut off once they back up for `frame_timeout`. A session's decoded audio is
reserved in the decoded-audio budget while it is open.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from statistics import median
from typing import TYPE_CHECKING, Any

import numpy as np

from whisperd.core import live, protocol
from whisperd.core.errors import (
    AudioTooLong,
    FrameTimeout,
    Overloaded,
    ProtocolError,
    ShuttingDown,
    WhisperdError,
)
from whisperd.core.constants import SAMPLE_RATE
from whisperd.core.transcript import Transcript
from whisperd.daemon import requests
from whisperd.daemon.live import LiveSession
from whisperd.daemon.windows import default_detector
from whisperd.daemon.pool import BYTES_PER_SECOND

if TYPE_CHECKING:
    from whisperd.daemon.server import Server

log = logging.getLogger("whisperd.live")

MAX_PIECE_S = 28.0  # an utterance is cut at a pause before Whisper's 30 s
# What one session may hold: its piece, the copy being decoded, the chunk being converted.
SESSION_BYTES = int((2 * MAX_PIECE_S + 10) * BYTES_PER_SECOND)
LATENCIES_KEPT = 200  # recent end-of-speech-to-final times, for the status' median


class LiveStreams:
    def __init__(self, server: "Server") -> None:
        self.server = server
        self.open: set[str] = set()
        self.counters = {"live_sessions": 0, "live_refused": 0, "live_utterances": 0, "live_partials": 0,
                         "live_timeouts": 0}
        self.final_latency: deque[float] = deque(maxlen=LATENCIES_KEPT)  # the recent ones
        self.final_latency_sum = 0.0

    def status(self) -> dict[str, Any]:
        recent = list(self.final_latency)
        return {
            "sessions": len(self.open),
            "max_sessions": self.server.config.max_live_sessions,
            **self.counters,
            "finals": self.counters["live_utterances"],
            "final_latency_s_sum": round(self.final_latency_sum, 4),
            "final_latency_s_median": round(median(recent), 4) if recent else None,
        }

    async def serve(self, request: protocol.Request, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> bool:
        """One stream request, to its `result` or `error`; False: close the connection."""
        server, config = self.server, self.server.config
        assert request.stream is not None
        if server.draining:
            await server._refuse(writer, request.id, ShuttingDown("the daemon is shutting down"))
            return False
        cap = config.max_live_sessions
        if len(self.open) >= cap:
            self.counters["live_refused"] += 1
            why = ("live speech is turned off here (max_live_sessions = 0)" if cap == 0 else
                   f"{len(self.open)} live sessions are open, the most this daemon takes (max_live_sessions); "
                   "try again shortly")
            writer.write(protocol.error_frame(request.id, Overloaded(why)))
            await writer.drain()
            return True
        try:
            jobs = requests.live_jobs_for(request, default=server.model, served=server.pool.models,
                                          defaults=server.defaults)
            server.pool.reserve(SESSION_BYTES)
        except WhisperdError as err:
            writer.write(protocol.error_frame(request.id, err))
            await writer.drain()
            return True
        self.open.add(request.id)
        self.counters["live_sessions"] += 1
        server._inflight += 1
        server.on_change()
        try:
            return await self._session(request, jobs, reader, writer)
        finally:
            self.open.discard(request.id)
            server.pool.release(SESSION_BYTES)
            server._inflight -= 1
            server.on_change()

    async def _session(self, request: protocol.Request, jobs: requests.LiveJobs,
                       reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        server, config, rid = self.server, self.server.config, request.id
        settings = request.stream
        assert settings is not None
        pool = server.pool
        decodes = 0

        async def decode(pcm: np.ndarray, final: bool, prompt: str | None) -> Transcript:
            nonlocal decodes
            decodes += 1
            return await pool.submit_live(jobs.job(decodes, final, prompt), pcm, final=final)

        def send(kind: str, **fields: Any) -> None:
            if kind == "partial":
                self.counters["live_partials"] += 1
            elif kind == "final":
                self.counters["live_utterances"] += 1
                self.final_latency_sum += fields["processing_seconds"]
                self.final_latency.append(fields["processing_seconds"])
                log.debug("stream %s utterance %d: %s", rid, fields["utterance"], fields["text"])
            if not writer.is_closing():
                writer.write(protocol.stream_frame(rid, kind, **fields))

        session = LiveSession(settings, decode, send, default_detector(config.window_vad),
                              prompt=request.options.prompt, partial_interval_s=config.live_partial_interval,
                              load=lambda: len(self.open) / max(1, len(pool.hot)),
                              max_piece_s=MAX_PIECE_S)
        started = time.monotonic()
        log.info("stream %s opened: model %s, %d Hz %s, %s", rid, jobs.model, settings.sample_rate,
                 settings.encoding, "server VAD" if settings.vad else "client commits")
        send("stream_started", session={"model": jobs.model, **settings.to_json(),
                                        "language": jobs.final_options.language})
        try:
            while True:
                await self._flush(writer)
                frame = await self._next_frame(reader, started)
                if frame.type == "audio":
                    data = await self._read_chunk(reader, frame.size)
                    if (session.samples + len(data) // settings.bytes_per_sample * SAMPLE_RATE / settings.sample_rate
                            > config.live_max_seconds * SAMPLE_RATE):
                        raise AudioTooLong(f"the live session passed {config.live_max_seconds:g} s of audio "
                                           "(live_max_seconds)")
                    await session.audio_chunk(data)
                elif frame.type == "commit":
                    await session.commit()
                elif frame.type == "clear":
                    session.clear()
                else:
                    await session.end()
                    send_result = {"utterances": session.stats.utterances, "partials": session.stats.partials,
                                   "audio_seconds": round(session.samples / SAMPLE_RATE, 3)}
                    writer.write(protocol.json_frame({"v": live.STREAM_VERSION, "type": "result", "id": rid,
                                                      "result": send_result}))
                    await self._flush(writer)
                    log.info("stream %s ended: %d utterances, %.1f s of audio", rid, session.stats.utterances,
                             session.samples / SAMPLE_RATE)
                    server.served += 1
                    return True
                if server.draining:
                    await session.end()
                    raise ShuttingDown("the daemon is shutting down")
        except EOFError:
            log.info("stream %s: the client went away", rid)
            return False
        except (ConnectionError, asyncio.CancelledError):
            raise
        except WhisperdError as err:
            if isinstance(err, FrameTimeout):
                self.counters["live_timeouts"] += 1
            closing = isinstance(err, (ProtocolError, ShuttingDown, AudioTooLong))
            log.info("stream %s ended: %s (%s)", rid, err.message, err.code)
            if not writer.is_closing():
                writer.write(protocol.error_frame(rid, err))
                try:
                    await self._flush(writer)
                except WhisperdError:
                    return False
            return not closing
        finally:
            session.close()

    async def _next_frame(self, reader: asyncio.StreamReader, started: float) -> live.ClientFrame:
        config = self.server.config
        left = config.live_max_seconds - (time.monotonic() - started)
        if left <= 0:
            raise AudioTooLong(f"the live session passed {config.live_max_seconds:g} s (live_max_seconds)")
        wait = min(config.live_idle_timeout, left)
        try:
            async with asyncio.timeout(wait):
                payload = await protocol.read_frame(reader, protocol.MAX_HEADER)
        except TimeoutError:
            if wait < config.live_idle_timeout:
                raise AudioTooLong(f"the live session passed {config.live_max_seconds:g} s "
                                   "(live_max_seconds)") from None
            raise FrameTimeout(f"no frame from the client for {config.live_idle_timeout:g} s "
                               "(live_idle_timeout)") from None
        return protocol.parse_client_frame(payload)

    async def _read_chunk(self, reader: asyncio.StreamReader, size: int) -> bytes:
        timeout = self.server.config.frame_timeout + size / (1 << 20)
        try:
            async with asyncio.timeout(timeout):
                data = await protocol.read_frame(reader, live.MAX_CHUNK)
        except TimeoutError:
            raise FrameTimeout(f"the audio chunk ({size} bytes) was not complete within {timeout:.0f} s") from None
        except EOFError:
            raise ProtocolError("connection closed before the announced audio chunk") from None
        if len(data) != size:
            raise ProtocolError(f"audio chunk has {len(data)} bytes; its frame announced {size}")
        return data

    async def _flush(self, writer: asyncio.StreamWriter) -> None:
        """Send what is queued; a client that stops reading is cut off after `frame_timeout`."""
        try:
            async with asyncio.timeout(self.server.config.frame_timeout):
                await writer.drain()
        except TimeoutError:
            raise FrameTimeout("the client stopped reading the stream's events") from None
