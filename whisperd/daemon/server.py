"""The Unix-socket server: listener, connections, request dispatch, graceful drain.

One connection carries many requests, one after another (a client sends its
next request only after the final reply to the previous one). While a request
runs, the connection is watched: a client that hangs up has its work dropped.
"""

from __future__ import annotations

import asyncio
import grp
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable

from whisperd import __version__
from whisperd.core import protocol
from whisperd.core.errors import (
    ModelNotFound,
    ProtocolError,
    UnsupportedForModel,
    WhisperdError,
)
from whisperd.core.model_names import DEFAULT_ALIASES
from whisperd.core.transcript import Segment, segment_dict
from whisperd.daemon.config import DaemonConfig
from whisperd.daemon.jobs import Job, JobCancelled
from whisperd.daemon.pool import Pool
from whisperd.engines.base import ModelInfo, Options

log = logging.getLogger("whisperd.server")


def bind_unix_socket(path: str, mode: int, group: str) -> socket.socket:
    """Bind `path` with `mode` and `group` set before anyone can connect."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.is_socket() or p.exists():
        # A stale socket from a crashed run; refuse to steal one that is alive.
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            p.unlink()
        else:
            raise OSError(f"another daemon is already listening on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o777 & ~mode)  # no window where the socket is wider open
    try:
        sock.bind(path)
        os.chmod(path, mode)
        if group:
            os.chown(path, -1, grp.getgrnam(group).gr_gid)
        sock.listen(128)
    except (OSError, KeyError) as exc:
        sock.close()
        reason = f"no group {group!r}" if isinstance(exc, KeyError) else (exc.strerror or str(exc))
        raise OSError(f"cannot listen on {path}: {reason}") from None
    finally:
        os.umask(old_umask)
    return sock


class Server:
    def __init__(self, config: DaemonConfig, model: ModelInfo, pool: Pool) -> None:
        self.config = config
        self.model = model
        self.pool = pool
        self.started_at = time.monotonic()
        self.draining = False
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task] = set()
        self._inflight = 0
        self.served = 0
        self.on_change: Callable[[], None] = lambda: None  # e.g. refresh systemd STATUS=

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self, sock: socket.socket) -> None:
        self._server = await asyncio.start_unix_server(self._on_connection, sock=sock)

    async def drain(self, grace: float) -> None:
        """Stop accepting, let in-flight requests finish within `grace`, then cut the rest."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        deadline = time.monotonic() + grace
        while self._inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(self._connections, timeout=2)
        await self.pool.drain(max(0.0, deadline - time.monotonic()))

    def status(self) -> dict[str, Any]:
        engine = self.pool.engine
        return {
            "status": "draining" if self.draining else "ready",
            "version": __version__,
            "model": self.model.name,
            "engine": engine.name,
            "device": engine.device,
            "compute_type": engine.compute_type,
            **self.pool.status(),
            "served": self.served,
            "uptime": round(time.monotonic() - self.started_at, 1),
        }

    def models(self) -> list[dict[str, Any]]:
        loaded = self.pool.loaded_models()
        return [{"id": m.name, "loaded": m.name in loaded, "multilingual": m.multilingual,
                 "default": m.name == self.model.name} for m in self.pool.models.values()]

    # --- connections -------------------------------------------------------------------

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:  # a bug must cost one connection, never the daemon
            log.exception("connection handler failed")
        finally:
            self._connections.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while not self.draining:
            rid = None
            try:
                header = await protocol.read_frame(reader, protocol.MAX_HEADER)
                request = protocol.parse_request(header, max_audio=self.config.max_audio_bytes)
                rid = request.id
                audio = b""
                if request.op == "transcribe":
                    audio = await protocol.read_frame(reader, self.config.max_audio_bytes)
                    if len(audio) != request.audio_size:
                        raise ProtocolError(
                            f"audio frame has {len(audio)} bytes; the header announced {request.audio_size}"
                        )
            except EOFError:
                return
            except WhisperdError as err:
                # We cannot trust the rest of the stream: answer, then close.
                log.info("request %s refused: %s (%s)", rid or "-", err.message, err.code)
                writer.write(protocol.error_frame(rid, err))
                await writer.drain()
                return
            keep_open = await self._handle(request, audio, reader, writer)
            if not keep_open:
                return

    async def _handle(
        self, request: protocol.Request, audio: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        if request.op == "ping":
            writer.write(protocol.result_frame(request.id, {"pong": True}))
        elif request.op == "status":
            writer.write(protocol.result_frame(request.id, self.status()))
        elif request.op == "models":
            writer.write(protocol.result_frame(request.id, {"models": self.models()}))
        else:
            return await self._transcribe(request, audio, reader, writer)
        await writer.drain()
        return True

    def _model_for(self, requested: str | None) -> ModelInfo:
        if requested in (None, "", *DEFAULT_ALIASES):
            return self.model
        if requested in self.pool.models:
            return self.pool.models[requested]
        served = ", ".join([*DEFAULT_ALIASES, *sorted(self.pool.models)])
        raise ModelNotFound(f"model {requested!r} is not served here (served: {served})")

    def _options(self, request: protocol.Request, model: ModelInfo) -> Options:
        o = request.options
        language = o.language
        if language is not None:
            from whisperd.core.languages import normalize_language

            language = normalize_language(language)
        if model.english_only:
            if o.task == "translate":
                raise UnsupportedForModel(
                    f"model {model.name} is English-only and cannot translate; "
                    "name a multilingual model (e.g. 'base')", param="model"
                )
            if language not in (None, "en"):
                raise UnsupportedForModel(
                    f"model {model.name} is English-only; it cannot transcribe language {language!r} "
                    "(name a multilingual model, e.g. 'base')",
                    param="language",
                )
        return Options(
            task=o.task,
            language=language,
            prompt=o.prompt,
            temperature=o.temperature,
            word_timestamps=o.word_timestamps,
            beam_size=o.beam_size or self.config.beam_size,
            no_speech_threshold=self.config.no_speech_threshold,
            vad_filter=self.config.vad_filter,
            short_path=self.config.short_path == "on",
        )

    async def _transcribe(
        self, request: protocol.Request, audio: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        started = time.monotonic()
        try:
            model = self._model_for(request.model)
            options = self._options(request, model)
        except WhisperdError as err:
            writer.write(protocol.error_frame(request.id, err))
            await writer.drain()
            return True

        def on_segment(seg: Segment, fraction: float) -> None:
            if writer.is_closing():
                return
            if request.segments:
                writer.write(protocol.segment_frame(request.id, segment_dict(seg)))
            if request.progress:
                writer.write(protocol.progress_frame(request.id, fraction, job.audio_seconds))

        job = Job(request.id, options, model.name, on_segment)
        self._inflight += 1
        self.on_change()
        work = asyncio.ensure_future(self.pool.submit(job, audio))
        del audio
        hangup = asyncio.ensure_future(reader.read(1))
        try:
            await asyncio.wait({work, hangup}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                # The client hung up (or broke the protocol by sending early): drop its work.
                job.cancelled = True
                work.cancel()
                log.info("request %s dropped: client went away", request.id)
                await asyncio.gather(work, return_exceptions=True)
                return False
            try:
                transcript, worker = work.result()
            except JobCancelled:
                return False
            except WhisperdError as err:
                log.info("request %s failed: %s (%s)", request.id, err.message, err.code)
                writer.write(protocol.error_frame(request.id, err))
                await writer.drain()
                return not hangup.done()
            except Exception as exc:
                log.exception("request %s failed in the engine", request.id)
                err = WhisperdError(f"transcription failed: {type(exc).__name__}")
                writer.write(protocol.error_frame(request.id, err))
                await writer.drain()
                return not hangup.done()
            elapsed = time.monotonic() - started
            self.served += 1
            log.info(
                "request %s done: %.1f s audio in %.2f s, model %s, worker %s, %d segments",
                request.id, job.audio_seconds, elapsed, model.name, worker, len(transcript.segments),
            )
            log.debug("request %s text: %s", request.id, transcript.text)
            writer.write(
                protocol.result_frame(
                    request.id,
                    transcript.to_dict(),
                    worker=worker,
                    model=model.name,
                    processing_seconds=round(elapsed, 4),
                )
            )
            await writer.drain()
            return not hangup.done()
        finally:
            if not hangup.done():
                hangup.cancel()
                # Let the cancelled read unwind before the next read on this stream.
                await asyncio.gather(hangup, return_exceptions=True)
            self._inflight -= 1
            self.on_change()
