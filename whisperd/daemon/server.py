"""The Unix-socket server: listener, connections, request dispatch, graceful drain.

One connection carries many requests, one after another (a client sends its
next request only after the final reply to the previous one). While a request
runs, the connection is watched: a client that hangs up has its work dropped.
Requests are validated in `whisperd.daemon.requests`; replies are the typed
values of `whisperd.core.replies`.

No client can hold the daemon by never finishing: a header frame, once begun,
must arrive within `frame_timeout`, and the audio frame within that plus a second
per MiB. At most `max_connections` are open (fewer when the file limit is lower);
a new one beyond that closes the oldest connection that has no request in
flight (idle, or stalled inside a header) - so stalled connections can never
shut out a real client - and is refused with `overloaded` only when every
connection is busy with a request.
"""

from __future__ import annotations

import asyncio
import grp
import logging
import os
import resource
import socket
import time
from pathlib import Path
from typing import Any, Callable

from whisperd import __version__
from whisperd.core import protocol
from whisperd.core.errors import FrameTimeout, Overloaded, ProtocolError, ShuttingDown, WhisperdError
from whisperd.core.replies import (
    DaemonState,
    DaemonStatus,
    ModelEntry,
    RescanResult,
    TranscribeResult,
    model_list_dict,
)
from whisperd.core.transcript import Segment, segment_dict
from whisperd.daemon import requests
from whisperd.daemon.config import DaemonConfig
from whisperd.daemon.jobs import JobCancelled
from whisperd.daemon.live_server import LiveStreams
from whisperd.daemon.pool import Pool
from whisperd.engines.base import ModelInfo

log = logging.getLogger("whisperd.server")

AUDIO_MIN_RATE = 1 << 20  # bytes/s an audio frame must keep up (local clients send at memory speed)
FD_RESERVE = 64  # descriptors kept for the daemon itself: model files, cold workers, pipes
ACCEPT_BURST = 100  # connections asyncio accepts in one go (its `backlog`), before any handler runs
CAP_LOG_EVERY = 10.0  # seconds between two "connection cap reached" warnings


def connection_cap(wanted: int) -> int:
    """`max_connections`, lowered to what the file limit leaves beyond the daemon's own needs."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    # Room for one whole accept burst beyond the cap: the displaced connections close only after it.
    return max(1, min(wanted, soft - FD_RESERVE - ACCEPT_BURST))


def bind_unix_socket(path: str, mode: int, group: str) -> socket.socket:
    """Bind `path` with `mode` and `group` set before anyone can connect."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.exists() and not p.is_socket():
        # Only a stale socket is ours to remove; anything else at the path is someone's file.
        raise OSError(f"cannot listen on {path}: it exists and is not a socket (remove it or choose another path)")
    if p.is_socket():
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
        # Connections with no request in flight, oldest first: the ones a new connection may displace.
        self._idle: dict[asyncio.Task, asyncio.StreamWriter] = {}
        self.max_connections = connection_cap(config.max_connections)
        self._cap_logged = -CAP_LOG_EVERY
        self._inflight = 0
        self.served = 0
        self.counters = {"connections_evicted": 0, "connections_refused": 0, "frame_timeouts": 0}
        self.on_change: Callable[[], None] = lambda: None  # e.g. refresh systemd STATUS=
        self.live = LiveStreams(self)
        self._disk_facts: dict[ModelInfo, dict[str, Any]] = {}  # source and size, by model

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self, sock: socket.socket) -> None:
        self._server = await asyncio.start_unix_server(self._on_connection, sock=sock, backlog=ACCEPT_BURST)

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
        pool = self.pool.status()
        # The pool reports its part as plain data (lanes, counters...); the typed reply
        # takes what it knows of it.
        return DaemonStatus.from_dict({
            "status": DaemonState.DRAINING if self.draining else DaemonState.READY,
            "version": __version__,
            "model": self.model.name,
            "engine": engine.name,
            "device": engine.device,
            "compute_type": engine.compute_type,
            **pool,
            "counters": {**pool.get("counters", {}), **self.counters},
            "live": self.live.status(),
            "served": self.served,
            "uptime": round(time.monotonic() - self.started_at, 1),
        })

    def models(self) -> list[ModelEntry]:
        loaded = self.pool.loaded_models()
        return [ModelEntry(m.name, loaded=m.name in loaded, multilingual=m.multilingual,
                           default=m.name == self.model.name, **self._on_disk(m))
                for m in self.pool.models.values()]

    def _on_disk(self, model: ModelInfo) -> dict[str, Any]:
        """Where a model came from and its size, worked out once per model (a few stat calls)."""
        if model not in self._disk_facts:
            from whisperd.core.model_dirs import size_on_disk
            from whisperd.daemon.models import model_source

            c = self.config
            self._disk_facts[model] = {"source": model_source(model, c.cache_path, c.models_path, c.hf_cache_path),
                                       "size_bytes": size_on_disk(model.path)}
        return self._disk_facts[model]

    async def rescan(self) -> RescanResult:
        """Read the models folder and the hub cache again (the `rescan` op, SIGHUP): a model pulled
        or removed meanwhile is served, or refused, from the next request on - no restart."""
        from whisperd.daemon.models import served_models

        before = set(self.pool.models)
        try:
            fresh = await asyncio.to_thread(served_models, self.config, self.model)
        except OSError as exc:  # an unreadable models folder: keep serving what was there
            raise WhisperdError(f"cannot read the models: {exc.strerror or exc}: {exc.filename or ''}") from None
        self.pool.set_models(fresh)
        self._disk_facts.clear()
        added, removed = sorted(set(fresh) - before), sorted(before - set(fresh))
        log.info("models rescanned: %d served%s%s", len(fresh), f", added {', '.join(added)}" if added else "",
                 f", removed {', '.join(removed)}" if removed else "")
        await asyncio.to_thread(lambda: [self._on_disk(m) for m in fresh.values()])  # the stat calls, off the loop
        return RescanResult(tuple(self.models()), tuple(added), tuple(removed), str(self.config.models_path))

    # --- connections -------------------------------------------------------------------

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= self.max_connections and not self._displace_idle():
            self.counters["connections_refused"] += 1
            self._note_cap("refused a new connection: every connection has a request in flight")
            try:
                writer.write(protocol.error_frame(None, Overloaded(
                    f"whisperd has {len(self._connections)} connections open, each with a request in flight "
                    "(max_connections); try again shortly")))
                await writer.drain()
            except ConnectionError:
                pass
            writer.close()
            return
        self._connections.add(task)
        try:
            await self._serve(reader, writer, task)
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:  # a bug must cost one connection, never the daemon
            log.exception("connection handler failed")
        finally:
            self._connections.discard(task)
            self._idle.pop(task, None)
            writer.close()

    def _displace_idle(self) -> bool:
        """Close the oldest connection without a request in flight; False when there is none."""
        if not self._idle:
            return False
        task, writer = next(iter(self._idle.items()))
        del self._idle[task]
        self._connections.discard(task)  # counted out now: its handler unwinds a moment later
        writer.transport.abort()
        task.cancel()
        self.counters["connections_evicted"] += 1
        self._note_cap("closed the oldest idle connection to make room")
        return True

    def _note_cap(self, what: str) -> None:
        now = time.monotonic()
        if now - self._cap_logged >= CAP_LOG_EVERY:  # a flood of connections must not flood the journal
            self._cap_logged = now
            log.warning("connection cap reached (%d, max_connections): %s; so far %d closed, %d refused",
                        self.max_connections, what, self.counters["connections_evicted"],
                        self.counters["connections_refused"])

    async def _read_header(self, reader: asyncio.StreamReader) -> bytes:
        """The next header frame: an idle connection may wait for it as long as it likes, but once
        its first byte is in, the whole frame must follow within `frame_timeout`."""
        first = await reader.read(1)
        if not first:
            raise EOFError
        timeout = self.config.frame_timeout
        try:
            async with asyncio.timeout(timeout):
                try:
                    rest = await reader.readexactly(protocol.LENGTH.size - 1)
                except asyncio.IncompleteReadError:
                    raise ProtocolError("connection closed inside a frame length") from None
                length = protocol.parse_length(first + rest, protocol.MAX_HEADER)
                try:
                    return await reader.readexactly(length)
                except asyncio.IncompleteReadError:
                    raise ProtocolError("connection closed inside a frame") from None
        except TimeoutError:
            raise FrameTimeout(f"the request header was not complete within {timeout:g} s (frame_timeout)") from None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, task: asyncio.Task) -> None:
        while not self.draining:
            self._idle[task] = writer  # waiting for (or inside) a header: may be displaced
            try:
                header = await self._read_header(reader)
                request = protocol.parse_request(header, max_audio=self.config.max_audio_bytes)
            except EOFError:
                return
            except WhisperdError as err:
                await self._refuse(writer, None, err)
                return
            finally:
                self._idle.pop(task, None)
            if request.op == "transcribe":
                # It reads its own audio frame: no frame here holds the bytes meanwhile.
                keep_open = await self._transcribe(request, reader, writer)
            elif request.op == "stream":
                keep_open = await self.live.serve(request, reader, writer)
            elif request.op == "rescan":
                writer.write(await self._rescan_frame(request.id))
                await writer.drain()
                keep_open = True
            else:
                writer.write(protocol.result_frame(request.id, self._answer(request.op)))
                await writer.drain()
                keep_open = True
            if not keep_open:
                return

    async def _refuse(self, writer: asyncio.StreamWriter, rid: str | None, err: WhisperdError) -> None:
        """A broken frame: answer it, and the caller closes - the rest of the stream is not trusted."""
        if isinstance(err, FrameTimeout):
            # Counted, not logged at info: a thousand stalled connections are one event, not a thousand.
            self.counters["frame_timeouts"] += 1
            log.debug("request %s refused: %s (%s)", rid or "-", err.message, err.code)
        else:
            log.info("request %s refused: %s (%s)", rid or "-", err.message, err.code)
        writer.write(protocol.error_frame(rid, err))
        await writer.drain()

    async def _rescan_frame(self, rid: str) -> bytes:
        try:
            return protocol.result_frame(rid, (await self.rescan()).to_dict())
        except WhisperdError as err:
            log.warning("rescan failed: %s", err.message)
            return protocol.error_frame(rid, err)

    def _answer(self, op: str) -> dict[str, Any]:
        if op == "status":
            return self.daemon_status().to_dict()
        if op == "models":
            return model_list_dict(self.models())
        return {"pong": True}

    async def _read_audio(self, reader: asyncio.StreamReader, request: protocol.Request) -> bytes:
        timeout = self.config.frame_timeout + request.audio_size / AUDIO_MIN_RATE
        try:
            async with asyncio.timeout(timeout):
                audio = await protocol.read_frame(reader, self.config.max_audio_bytes)
        except TimeoutError:
            raise FrameTimeout(f"the audio frame ({request.audio_size} bytes) was not complete within "
                               f"{timeout:.0f} s (frame_timeout + 1 s per MiB)") from None
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
