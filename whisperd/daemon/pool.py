"""The dispatcher: the hot lane plus cold workers, driven by `whisperd.daemon.policy`.

Every event - a request arrives, a lane frees up, a worker becomes ready or
dies, a one-second tick - gathers the facts, asks the pure policy for a
decision and carries it out. Jobs are bound to a lane only when it is idle.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from statistics import median
from typing import Any

import numpy as np

from whisperd.core.errors import ModelNotFound, Overloaded, ShuttingDown, WorkerFailed
from whisperd.core.transcript import Transcript
from whisperd.daemon import policy
from whisperd.daemon.config import DaemonConfig
from whisperd.daemon.jobs import Job, JobCancelled
from whisperd.daemon.lanes.cold import ColdWorker, fork_context
from whisperd.daemon.lanes.hot import HotLane
from whisperd.daemon.resources import free_vram_mb, mem_available_mb, rss_mb
from whisperd.engines.base import ModelInfo

log = logging.getLogger("whisperd.pool")


@dataclass
class Pending:
    job: Job
    pcm: np.ndarray
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)


# A plain 16 kHz mono PCM WAV up to this size (8 s) is decoded on the event loop:
# its samples only need converting (~0.1 ms), and a thread hand-off costs more.
INLINE_DECODE_BYTES = 256 * 1024

# After a failed cold start, its model gets no new cold workers for this long (the
# hot worker takes the work meanwhile) - not a spawn loop.
SPAWN_BACKOFF_S = 30.0


class Pool:
    def __init__(self, config: DaemonConfig, hot: list[HotLane], models: dict[str, ModelInfo]) -> None:
        self.config = config
        self.hot = hot  # one lane per slot of the hot worker
        self.engine = hot[0].engine  # cold workers run the same engine on the same device
        self.models = models
        self.settings = policy.Settings(
            max_cold_workers=config.max_cold_workers,
            long_audio_s=config.long_audio_seconds,
            idle_timeout_s=config.worker_idle_timeout,
            reap_stagger_s=max(1.0, config.worker_idle_timeout / 6),
            hot_model=hot[0].model,
        )
        self._hot_by_id = {lane.id: lane for lane in hot}
        self.cold: dict[str, ColdWorker] = {}
        self.pending: list[Pending] = []
        self.running: dict[str, tuple[Any, Pending]] = {}  # job id → (lane, pending)
        self.decoding = 0
        self.spawns = 0
        self.crashes = 0
        self.spawn_times: list[float] = []
        self.seconds_per_audio_s = 0.05
        self._next_id = 1
        self._last_reap = time.monotonic()
        self._decode = ThreadPoolExecutor(2, thread_name_prefix="decode")
        self._memory_mb: dict[str, float] = {}  # measured RSS of a ready worker, by model
        self._size_guess_mb: dict[str, float] = {}
        self._free_memory_cached, self._free_memory_at = 0.0, float("-inf")
        self._tick: asyncio.Task | None = None
        self._spawn_failed_at: dict[str, float] = {}  # model → when its cold start last failed
        self._closing = False
        self.on_change = lambda: None

    # --- requests ----------------------------------------------------------------------

    def start(self) -> None:
        self._tick = asyncio.ensure_future(self._ticker())

    @property
    def queue_depth(self) -> int:
        return len(self.pending) + self.decoding

    async def submit(self, job: Job, audio: bytes) -> tuple[Transcript, str]:
        """Decode, queue, run; returns the transcript and the lane that served it."""
        if self._closing:
            raise ShuttingDown("the daemon is shutting down")
        if job.model not in self.models:
            raise ModelNotFound(f"model {job.model!r} is not served here")
        if self.queue_depth + len(self.running) >= self.config.queue_size:
            raise Overloaded(f"{self.queue_depth} requests are waiting; try again shortly")
        from whisperd.daemon.audio import decode_audio, is_plain_wav

        loop = asyncio.get_running_loop()
        decode = functools.partial(decode_audio, audio, max_duration_s=self.config.max_audio_seconds)
        if len(audio) <= INLINE_DECODE_BYTES and is_plain_wav(audio):
            pcm = decode()  # microseconds: cheaper than a hand-off to a decode thread
        else:
            self.decoding += 1
            try:
                pcm = await loop.run_in_executor(self._decode, decode)
            finally:
                self.decoding -= 1
        del audio, decode  # the encoded bytes are not needed any more
        job.audio_seconds = len(pcm) / 16000
        entry = Pending(job, pcm, loop.create_future())
        self.pending.append(entry)
        self._schedule()
        try:
            return await asyncio.shield(entry.future)
        except asyncio.CancelledError:
            self.cancel(entry)
            raise

    def cancel(self, entry: Pending) -> None:
        entry.job.cancelled = True
        if entry in self.pending:
            self.pending.remove(entry)  # never started: simply dropped
        elif entry.job.id in self.running:
            lane, _ = self.running[entry.job.id]
            lane.cancel(entry.job)  # stopped at its next segment
        if not entry.future.done():
            entry.future.set_exception(JobCancelled("the client went away"))
            entry.future.exception()  # retrieved: nobody else will

    # --- the policy loop ---------------------------------------------------------------

    def _lanes(self) -> list[Any]:
        return [*self.hot, *self.cold.values()]

    def _worker_facts(self, now: float) -> list[policy.WorkerFacts]:
        facts = []
        for lane in self._lanes():
            if lane.state in ("dead", "stopping"):
                continue
            if lane.state == "loading":
                remaining = max(0.0, self._load_estimate() - (now - lane.spawned_at))
            else:
                remaining = max(0.0, lane.busy_until - now)
            facts.append(policy.WorkerFacts(
                lane.id, lane.kind, lane.model, lane.state, remaining,
                now - lane.idle_since if lane.state == "idle" else 0.0,
            ))
        return facts

    def _load_estimate(self) -> float:
        return median(self.spawn_times[-9:]) if self.spawn_times else 1.5

    def _free_memory(self, now: float) -> float:
        """MemAvailable, read at most once a second and only when a spawn is possible."""
        if len(self.cold) >= self.config.max_cold_workers:
            return 0.0
        if now - self._free_memory_at > 1.0:
            free = free_vram_mb() if self.engine.device == "cuda" else mem_available_mb()
            self._free_memory_cached, self._free_memory_at = free, now
        return self._free_memory_cached

    def _memory_estimate(self, model: str) -> float:
        """A worker's resident size: measured once one ran, else guessed from the weights."""
        if model in self._memory_mb:
            return self._memory_mb[model]
        if model not in self._size_guess_mb:
            info = self.models.get(model)
            weights = info.path / "model.bin" if info and info.kind == "ctranslate2" else (info.path if info else None)
            size = weights.stat().st_size / (1 << 20) if weights is not None else 500.0
            self._size_guess_mb[model] = 300.0 + 2.0 * size
        return self._size_guess_mb[model]

    def _schedule(self) -> None:
        if self._closing and not self.pending:
            return
        now = time.monotonic()
        if not self._may_act(now):
            return
        facts = policy.Facts(
            jobs=tuple(policy.JobFacts(p.job.id, p.job.audio_seconds, p.job.model, now - p.enqueued)
                       for p in self.pending),
            workers=tuple(self._worker_facts(now)),
            cpu_cores=os.cpu_count() or 1,
            free_memory_mb=self._free_memory(now),
            worker_memory_mb={m: self._memory_estimate(m) for m in {p.job.model for p in self.pending}},
            seconds_per_audio_s=self.seconds_per_audio_s,
            load_s=self._load_estimate(),
            since_last_reap_s=now - self._last_reap,
            no_spawn_models=frozenset(m for m, t in self._spawn_failed_at.items() if now - t < SPAWN_BACKOFF_S),
        )
        decision = policy.decide(facts, self.settings)
        for job_id, lane_id in decision.assign:
            entry = next(p for p in self.pending if p.job.id == job_id)
            self.pending.remove(entry)
            lane = self._hot_by_id[lane_id] if lane_id in self._hot_by_id else self.cold[lane_id]
            lane.state = "busy"  # now, so the next decision sees it taken
            lane.busy_until = now + entry.job.audio_seconds * self.seconds_per_audio_s
            self.running[job_id] = (lane, entry)
            asyncio.ensure_future(self._run_on(lane, entry))
        for model, threads in decision.spawn:
            if not self._closing:
                self._spawn(model, threads)
        for wid in decision.reap:
            self._last_reap = now
            worker = self.cold.get(wid)
            if worker is not None:
                log.info("%s idle for %.0f s: stopping it", wid, now - worker.idle_since)
                worker.stop()
        if decision.assign or decision.spawn or decision.reap:
            self.on_change()

    def _may_act(self, now: float) -> bool:
        """False when no decision could do anything: skip gathering the facts.

        Nothing is queued and no idle cold worker is due to exit; or work is queued
        but every lane is busy or loading, no worker may be started and none is
        idle to reap. At the framework's ceiling the queue is deep and every lane
        busy on almost every event.
        """
        if self.pending:
            room = len(self.cold) < self.config.max_cold_workers
            return room or any(lane.state == "idle" for lane in self._lanes())
        return bool(self.cold) and now - self._last_reap >= self.settings.reap_stagger_s

    async def _run_on(self, lane: Any, entry: Pending) -> None:
        job = entry.job
        started = time.monotonic()
        try:
            if lane.kind == "hot":
                transcript = await lane.run(job, entry.pcm)
            else:
                transcript = await lane.run(job, entry.pcm, self._timeout(job))
        except WorkerFailed as err:
            self._settle_failure(lane, entry, err)
        except BaseException as err:  # noqa: B902 - every outcome must reach the waiting client
            if not entry.future.done():
                entry.future.set_exception(err)
        else:
            took = time.monotonic() - started
            if job.audio_seconds >= 1:
                # Smoothed processing cost per audio second, for the policy's estimates.
                self.seconds_per_audio_s = 0.7 * self.seconds_per_audio_s + 0.3 * (took / job.audio_seconds)
            if not entry.future.done():
                entry.future.set_result((transcript, lane.name))
        finally:
            self.running.pop(job.id, None)
            if entry.future.done() or job.cancelled:
                entry.pcm = np.empty(0, np.float32)
            self._schedule()
            self.on_change()

    def _settle_failure(self, lane: Any, entry: Pending, err: WorkerFailed) -> None:
        job = entry.job
        timed_out = "longer than" in err.message
        if lane.state == "dead" or timed_out:
            log.warning("request %s: %s", job.id, err.message)
        if not timed_out and job.retries < 1 and not job.cancelled and not entry.future.done():
            job.retries += 1
            log.info("request %s: retrying on another worker", job.id)
            entry.enqueued = 0.0  # first in line
            self.pending.insert(0, entry)
            return
        if not entry.future.done():
            entry.future.set_exception(err)

    def _timeout(self, job: Job) -> float:
        return self.config.worker_timeout * max(1.0, job.audio_seconds / 60.0)

    # --- cold workers ------------------------------------------------------------------

    def _spawn(self, model: str, threads: int) -> None:
        wid = f"cold-{self._next_id}"
        self._next_id += 1
        worker = ColdWorker(
            wid, self.models[model], engine=self.engine.name, device=self.engine.device,
            compute_type=self.config.compute_type, threads=threads, cache_dir=str(self.config.cache_path),
            context=fork_context(self.engine.name == "openai-whisper"),
        )
        self.cold[wid] = worker
        self.spawns += 1
        log.info("%s: starting for model %s (%d threads)", wid, model, threads)
        asyncio.ensure_future(self._watch(worker))

    async def _watch(self, worker: ColdWorker) -> None:
        await worker.start()
        await worker.ready.wait()
        if worker.state == "dead":
            self.crashes += 1
            reason = worker.fatal.message if worker.fatal else "it exited while loading"
            log.error("%s failed to start: %s (no new %s workers for %.0f s)", worker.id, reason,
                      worker.model, SPAWN_BACKOFF_S)
            self._spawn_failed_at[worker.model] = time.monotonic()
            self.cold.pop(worker.id, None)
            self._fail_unservable(worker.model, reason)
        else:
            took = worker.spawn_to_ready_s or 0.0
            self.spawn_times.append(took)
            self._memory_mb[worker.model] = max(self._memory_mb.get(worker.model, 0.0), rss_mb(worker.pid or 0))
            log.info("%s ready in %.2f s (pid %s, model %s)", worker.id, took, worker.pid, worker.model)
            self._schedule()
            self.on_change()
            await worker.dead.wait()
            expected = self._closing or worker.stopping
            self.cold.pop(worker.id, None)
            if not expected:
                self.crashes += 1
                log.warning("%s (pid %s) exited unexpectedly (exit code %s)", worker.id, worker.pid,
                            worker.process.exitcode)
            await worker.wait_exit(5)
        self._schedule()
        self.on_change()

    def _fail_unservable(self, model: str, reason: str) -> None:
        """Jobs for a model no lane can load get an answer, not an endless wait."""
        if any(lane.model == model for lane in self._lanes() if lane.state != "dead"):
            return
        for entry in [p for p in self.pending if p.job.model == model]:
            self.pending.remove(entry)
            if not entry.future.done():
                entry.future.set_exception(WorkerFailed(f"no worker could load model {model}: {reason}"))

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._schedule()

    # --- status and shutdown -----------------------------------------------------------

    def status(self) -> dict[str, Any]:
        lanes = [{"id": l.id, "kind": l.kind, "model": l.model, "state": l.state, "served": l.served,
                  **({"pid": l.pid, "threads": l.threads} if l.kind == "cold" else {})}
                 for l in self._lanes()]
        return {
            "queue": self.queue_depth,
            "running": len(self.running),
            "workers": {"hot": 1, "cold": len(self.cold)},
            "hot_slots": len(self.hot),
            "loading": sum(1 for l in self.cold.values() if l.state == "loading"),
            "lanes": lanes,
            "spawns": self.spawns,
            "crashes": self.crashes,
            "spawn_to_ready_s": round(self._load_estimate(), 3) if self.spawn_times else None,
        }

    def loaded_models(self) -> set[str]:
        return {l.model for l in self._lanes() if l.state in ("idle", "busy")}

    async def drain(self, grace: float) -> None:
        """Finish queued and running work within `grace`, then stop every worker."""
        deadline = time.monotonic() + grace
        while (self.pending or self.running or self.decoding) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self._closing = True
        for entry in self.pending:
            if not entry.future.done():
                entry.future.set_exception(ShuttingDown("the daemon is shutting down"))
        self.pending.clear()
        if self._tick is not None:
            self._tick.cancel()
        workers = list(self.cold.values())
        for w in workers:
            w.stop()
        await asyncio.gather(*(w.wait_exit(5) for w in workers), return_exceptions=True)
        for lane in self.hot:
            lane.close()
        self._decode.shutdown(wait=False, cancel_futures=True)
