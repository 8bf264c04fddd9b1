"""Cold workers: OS child processes that load a model and serve jobs over a pipe.

Wire between the daemon and a worker (a `multiprocessing` pipe, whole messages):

    daemon → worker   JSON {"op": "transcribe", "id", "options"} then the raw
                      float32 PCM bytes as the next message (never base64);
                      JSON {"op": "cancel", "id"}; JSON {"op": "stop"}
    worker → daemon   JSON {"type": "ready", "pid", "load_s"} once; then per job
                      {"type": "segment", "id", "segment"}... and one
                      {"type": "result", "id", "result", "counters"} or
                      {"type": "error", "id", "error", "counters"} ("counters": the
                      engine's `counters()` snapshot, monotonic since it loaded)

Workers are forked from a pre-imported fork server (`multiprocessing`'s
"forkserver" with torch / ctranslate2 / faster-whisper already imported), so
a new worker only loads weights. Every reply names its job id; the daemon
drops a reply whose id is not the job it is waiting for, so a late answer from
a timed-out worker can never be taken for another request's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from whisperd.core.errors import WhisperdError, WorkerFailed, WorkerTimeout
from whisperd.core.transcript import Segment, Transcript, segment_dict
from whisperd.daemon.jobs import Job, JobCancelled
from whisperd.daemon.lanes.base import Lane, LaneFactory, LaneState
from whisperd.engines.base import ModelInfo, Options

if TYPE_CHECKING:
    from whisperd.daemon.config import DaemonConfig
    from whisperd.engines.base import Engine

log = logging.getLogger("whisperd.worker")

# Imported once in the fork server, so each worker starts with them in memory.
PRELOAD = ["numpy", "ctranslate2", "faster_whisper", "whisperd.engines.faster_whisper", "whisperd.daemon.audio"]
# Cold workers run at this nice level (the hot worker at the daemon's own).
COLD_NICENESS = 10
PRELOAD_TORCH = ["torch", "whisper", "whisper.timing", "whisperd.engines.openai.engine",
                 "whisperd.engines.openai.convert", "whisperd.engines.openai.meta_warmup"]


def _send(conn: Any, obj: dict[str, Any]) -> None:
    conn.send_bytes(json.dumps(obj).encode())


def worker_main(conn: Any, model: ModelInfo, engine_name: str, device: str, compute_type: str,
                threads: int, cache_dir: str) -> None:
    """Entry point of the child process."""
    # Ctrl-C in a terminal reaches the whole process group; the daemon decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # Below the hot worker in the CPU scheduler: when the cores are contended, the
    # voice command on the hot worker gets them first and the long file waits.
    try:
        os.nice(COLD_NICENESS)
    except OSError:
        pass
    started = time.monotonic()
    from whisperd.engines import load_engine

    try:
        engine = load_engine(engine_name, model, device=device, compute_type=compute_type,
                             cpu_threads=threads, cache_dir=cache_dir)
    except Exception as exc:  # report why, then exit: the daemon answers the request
        _send(conn, {"type": "fatal", "error": {"code": "worker_failed",
                                                "message": f"could not load {model.name}: {exc}"}})
        return
    _send(conn, {"type": "ready", "pid": os.getpid(), "load_s": time.monotonic() - started})
    cancelled: set[str] = set()
    while True:
        try:
            msg = json.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return  # the daemon is gone
        op = msg.get("op")
        if op == "stop":
            return
        if op == "cancel":
            cancelled.add(msg["id"])
            continue
        if op != "transcribe":
            continue
        job_id = msg["id"]
        pcm = np.frombuffer(conn.recv_bytes(), dtype=np.float32)

        def on_segment(seg: Segment, job_id: str = job_id) -> None:
            # Cancels arrive between segments; look for one without blocking.
            while conn.poll():
                extra = json.loads(conn.recv_bytes())
                if extra.get("op") == "cancel":
                    cancelled.add(extra.get("id"))
                elif extra.get("op") == "stop":
                    os._exit(0)
            if job_id in cancelled:
                raise JobCancelled("the client went away")
            _send(conn, {"type": "segment", "id": job_id, "segment": segment_dict(seg)})

        try:
            result = engine.transcribe(pcm, Options(**msg["options"]), on_segment)
            reply = {"type": "result", "id": job_id, "result": result.to_dict()}
        except WhisperdError as err:
            reply = {"type": "error", "id": job_id, "error": err.to_wire()}
        except Exception as exc:
            reply = {"type": "error", "id": job_id,
                     "error": {"code": "engine_error", "message": f"transcription failed: {exc}"}}
        _send(conn, {**reply, "counters": engine.counters()})
        cancelled.discard(job_id)


_context: Any = None


def fork_context(preload_torch: bool) -> Any:
    """The fork server context, started in the background with the heavy imports."""
    global _context
    if _context is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD + (PRELOAD_TORCH if preload_torch else []))
        _context = ctx
    return _context


def warm_fork_server(preload_torch: bool) -> None:
    """Start the fork server now (it imports in its own process), not on the first spawn."""
    fork_context(preload_torch)
    from multiprocessing import forkserver

    try:
        forkserver.ensure_running()
    except Exception as exc:  # e.g. no usable temporary directory for its socket
        log.warning("cannot start the cold-worker fork server (%s); the hot worker serves alone", exc)


def job_timeout(worker_timeout: float, audio_seconds: float) -> float:
    """`worker_timeout` seconds per minute of audio, at least one minute's worth."""
    return worker_timeout * max(1.0, audio_seconds / 60.0)


class ColdLane(Lane):
    kind = "cold"

    def __init__(self, wid: str, model: ModelInfo, *, engine: str, device: str, compute_type: str,
                 threads: int, cache_dir: str, context: Any, worker_timeout: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(wid, wid, model.name, state=LaneState.LOADING, clock=clock)
        self.threads = threads
        self.worker_timeout = worker_timeout
        self.ready_at: float | None = None
        self.ready = asyncio.Event()
        self.dead = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._job: Job | None = None
        self._attempt_id: str | None = None
        self._attempts = 0
        self._result: asyncio.Future | None = None
        self._engine_counters: dict[str, int] = {}  # the child's latest snapshot
        parent_conn, child_conn = context.Pipe()
        self._conn = parent_conn
        self._child_conn = child_conn
        self.process = context.Process(
            target=worker_main, name=f"whisperd-{wid}", daemon=True,
            args=(child_conn, model, engine, device, compute_type, threads, cache_dir),
        )
        self._send_lock = threading.Lock()

    async def start(self) -> None:
        # start() talks to the fork server (and starts it if needed): keep it off the loop.
        try:
            await asyncio.to_thread(self.process.start)
        except Exception as exc:
            self.fatal = WorkerFailed(f"could not start a worker: {exc}")
            self._on_exit()
            return
        finally:
            self._child_conn.close()
        self.pid = self.process.pid
        threading.Thread(target=self._read_loop, name=f"{self.id}-reader", daemon=True).start()
        await self.ready.wait()

    async def exited(self) -> None:
        await self.dead.wait()

    @property
    def exit_code(self) -> int | None:
        return self.process.exitcode

    @property
    def spawn_to_ready_s(self) -> float | None:
        return None if self.ready_at is None else self.ready_at - self.spawned_at

    def counters(self) -> dict[str, int]:
        return dict(self._engine_counters)

    def status(self) -> dict[str, Any]:
        return {**super().status(), "pid": self.pid, "threads": self.threads}

    # --- the reader thread hands every message to the event loop -----------------------

    def _read_loop(self) -> None:
        while True:
            try:
                msg = json.loads(self._conn.recv_bytes())
            except (EOFError, OSError, ValueError):
                break
            self._loop.call_soon_threadsafe(self._on_message, msg)
        self._loop.call_soon_threadsafe(self._on_exit)

    def _on_message(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "ready":
            self.ready_at = self._clock()
            if self.state is LaneState.LOADING:
                self._set_state(LaneState.IDLE)
            self.ready.set()
            return
        if kind == "fatal":
            self.fatal = WhisperdError.from_wire(msg["error"])
            return
        if isinstance(msg.get("counters"), dict):
            self._engine_counters = msg["counters"]  # whichever job it came with: still the engine's
        job = self._job
        if job is None or msg.get("id") != self._attempt_id or self._result is None:
            log.warning("%s: dropped a reply for %s, which it is not serving", self.id, msg.get("id"))
            return
        if kind == "segment":
            seg = Segment.from_dict(msg["segment"])
            if job.on_segment is not None and not job.cancelled:
                job.on_segment(seg, job.fraction_done(seg))
        elif kind == "result" and not self._result.done():
            self._result.set_result(Transcript.from_dict(msg["result"]))
        elif kind == "error" and not self._result.done():
            self._result.set_exception(WhisperdError.from_wire(msg["error"]))  # "cancelled": JobCancelled

    def _on_exit(self) -> None:
        self._set_state(LaneState.DEAD)
        self.ready.set()
        self.dead.set()
        if self._result is not None and not self._result.done():
            self._result.set_exception(WorkerFailed(f"worker {self.id} exited while serving the request"))

    # --- the daemon's side -------------------------------------------------------------

    async def run(self, job: Job, pcm: np.ndarray) -> Transcript:
        if self.state is LaneState.DEAD:
            raise WorkerFailed(f"worker {self.id} is gone")
        self._begin_job()
        timeout = job_timeout(self.worker_timeout, job.audio_seconds)
        self._job = job
        # A fresh id per attempt: a retried job never matches an earlier attempt's late reply.
        self._attempts += 1
        self._attempt_id = f"{job.id}.{self._attempts}"
        self._result = self._loop.create_future()
        header = json.dumps({"op": "transcribe", "id": self._attempt_id, "options": asdict(job.options)}).encode()
        try:
            # The pipe blocks once its buffer is full: send the audio off the event loop.
            await asyncio.to_thread(self._send_job, header, pcm)
            return await asyncio.wait_for(asyncio.shield(self._result), timeout)
        except asyncio.TimeoutError:  # before OSError: TimeoutError is an OSError
            # Kill it: its answer, if it ever came, must not be taken for anything. Killed on
            # purpose, so its exit is no crash (`closing`), and it takes nothing new meanwhile.
            self._begin_close()
            self.kill()
            raise WorkerTimeout(f"worker {self.id} took longer than {timeout:.0f} s and was stopped") from None
        except OSError as exc:
            # The process died before its reader saw it: take nothing more meanwhile.
            self._begin_close()
            self.kill()
            raise WorkerFailed(f"worker {self.id} is gone: {exc}") from None
        finally:
            self._job, self._result, self._attempt_id = None, None, None
            self._finished_job()

    def _send_job(self, header: bytes, pcm: np.ndarray) -> None:
        with self._send_lock:
            self._conn.send_bytes(header)
            self._conn.send_bytes(memoryview(np.ascontiguousarray(pcm, dtype=np.float32)).cast("B"))

    def cancel(self, job: Job) -> None:
        job.cancelled = True
        if self._job is job and self.state is LaneState.BUSY:
            try:
                with self._send_lock:
                    _send(self._conn, {"op": "cancel", "id": self._attempt_id})
            except OSError:
                pass

    def close(self) -> None:
        """Ask it to exit; `wait_closed` kills it if it has not after a moment."""
        self._begin_close()
        try:
            with self._send_lock:
                _send(self._conn, {"op": "stop"})
        except OSError:
            pass

    def kill(self) -> None:
        if self.process.pid is not None and self.process.is_alive():
            self.process.kill()

    async def wait_closed(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self.dead.wait(), timeout)
        except asyncio.TimeoutError:
            self.kill()
            await asyncio.wait_for(self.dead.wait(), 5)
        if self.process.pid is not None:
            await asyncio.to_thread(self.process.join, 5)
        self._conn.close()


def cold_lane_factory(config: "DaemonConfig", engine: "Engine") -> LaneFactory:
    """Cold lanes that run the hot worker's engine, on its device, under `config`'s limits."""

    def make(wid: str, model: ModelInfo, threads: int) -> Lane:
        return ColdLane(
            wid, model, engine=engine.name, device=engine.device, compute_type=config.compute_type,
            threads=threads, cache_dir=str(config.cache_path), worker_timeout=config.worker_timeout,
            context=fork_context(engine.name == "openai-whisper"),
        )

    return make
