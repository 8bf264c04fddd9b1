"""The Unix-socket server: listener, connections, request dispatch, graceful drain.

One connection carries many requests, one after another (a client sends its
next request only after the final reply to the previous one). While a request
runs, the connection is watched: a client that hangs up has its work dropped.
Requests are validated in `whisperd.daemon.requests`; replies are the typed
values of `whisperd.core.replies`.
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
from whisperd.core.errors import ProtocolError, ShuttingDown, WhisperdError
from whisperd.core.replies import DaemonState, DaemonStatus, ModelEntry, TranscribeResult, model_list_dict
from whisperd.core.transcript import Segment, segment_dict
from whisperd.daemon import requests
from whisperd.daemon.config import DaemonConfig
from whisperd.daemon.jobs import JobCancelled
from whisperd.daemon.pool import Pool
from whisperd.engines.base import ModelInfo

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
        self.defaults = requests.Defaults.from_config(config)
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

    def daemon_status(self) -> DaemonStatus:
        engine = self.pool.engine
        # The pool reports its part as plain data (lanes, counters...); the typed reply
        # takes what it knows of it.
        return DaemonStatus.from_dict({
            "status": DaemonState.DRAINING if self.draining else DaemonState.READY,
            "version": __version__,
            "model": self.model.name,
            "engine": engine.name,
            "device": engine.device,
            "compute_type": engine.compute_type,
            **self.pool.status(),
            "served": self.served,
            "uptime": round(time.monotonic() - self.started_at, 1),
        })

    def models(self) -> list[ModelEntry]:
        loaded = self.pool.loaded_models()
        return [ModelEntry(m.name, loaded=m.name in loaded, multilingual=m.multilingual,
                           default=m.name == self.model.name) for m in self.pool.models.values()]

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
            try:
                header = await protocol.read_frame(reader, protocol.MAX_HEADER)
                request = protocol.parse_request(header, max_audio=self.config.max_audio_bytes)
            except EOFError:
                return
            except WhisperdError as err:
                await self._refuse(writer, None, err)
                return
            if request.op == "transcribe":
                # It reads its own audio frame: no frame here holds the bytes meanwhile.
                keep_open = await self._transcribe(request, reader, writer)
            else:
                writer.write(protocol.result_frame(request.id, self._answer(request.op)))
                await writer.drain()
                keep_open = True
            if not keep_open:
                return

    async def _refuse(self, writer: asyncio.StreamWriter, rid: str | None, err: WhisperdError) -> None:
        """A broken frame: answer it, and the caller closes - the rest of the stream is not trusted."""
        log.info("request %s refused: %s (%s)", rid or "-", err.message, err.code)
        writer.write(protocol.error_frame(rid, err))
        await writer.drain()

    def _answer(self, op: str) -> dict[str, Any]:
        if op == "status":
            return self.daemon_status().to_dict()
        if op == "models":
            return model_list_dict(self.models())
        return {"pong": True}

    async def _read_audio(self, reader: asyncio.StreamReader, request: protocol.Request) -> bytes:
        audio = await protocol.read_frame(reader, self.config.max_audio_bytes)
        if len(audio) != request.audio_size:
            raise ProtocolError(f"audio frame has {len(audio)} bytes; the header announced {request.audio_size}")
        return audio

    async def _transcribe(
        self, request: protocol.Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        try:
            audio = await self._read_audio(reader, request)
        except EOFError:
            return False
        except WhisperdError as err:
            await self._refuse(writer, request.id, err)
            return False
        if self.draining:
            # Sent on a connection that was open before the drain began: new work, refused.
            await self._refuse(writer, request.id, ShuttingDown("the daemon is shutting down"))
            return False
        started = time.monotonic()

        def on_segment(seg: Segment, fraction: float) -> None:
            if writer.is_closing():
                return
            if request.segments:
                writer.write(protocol.segment_frame(request.id, segment_dict(seg)))
            if request.progress:
                writer.write(protocol.progress_frame(request.id, fraction, job.audio_seconds))

        try:
            job = requests.job_for(request, default=self.model, served=self.pool.models,
                                   defaults=self.defaults, on_segment=on_segment)
        except WhisperdError as err:
            writer.write(protocol.error_frame(request.id, err))
            await writer.drain()
            return True
        self._inflight += 1
        self.on_change()
        work = asyncio.ensure_future(self.pool.submit(job, audio))
        del audio  # the pool now holds the only reference, and drops it once decoded
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
                request.id, job.audio_seconds, elapsed, job.model, worker, len(transcript.segments),
            )
            log.debug("request %s text: %s", request.id, transcript.text)
            reply = TranscribeResult(transcript, id=request.id, worker=worker, model=job.model,
                                     processing_seconds=round(elapsed, 4))
            writer.write(protocol.reply_frame("result", reply.to_dict()))
            await writer.drain()
            return not hangup.done()
        finally:
            if not work.done():
                # This handler itself was cancelled (a forced stop cuts every connection):
                # the job must stop too, not run on for nobody.
                job.cancelled = True
                work.cancel()
            if not hangup.done():
                hangup.cancel()
                # Let the cancelled read unwind before the next read on this stream.
                await asyncio.gather(hangup, return_exceptions=True)
            self._inflight -= 1
            self.on_change()
