"""The dispatcher: the hot lanes plus cold lanes, driven by `whisperd.daemon.policy`.

Every event - a request arrives, a lane frees up, a cold lane becomes ready or
dies, a one-second tick - gathers the facts, asks the pure policy for a
decision and carries it out. Jobs are bound to a lane only when it is idle.
Lanes are reached only through their contract (`lanes.base.Lane`); decoding
is `decoding.Decoder`'s, memory figures are `resources.Resources`'.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from statistics import median
from typing import Any, Callable

import numpy as np

from whisperd.core.constants import SAMPLE_RATE
from whisperd.core.errors import (
    AudioTooLong,
    ModelNotFound,
    Overloaded,
    ShuttingDown,
    WhisperdError,
    WorkerFailed,
    WorkerTimeout,
)
from whisperd.core.transcript import Transcript
from whisperd.daemon import policy
from whisperd.daemon.config import DaemonConfig
from whisperd.daemon.decoding import Decoder
from whisperd.daemon.jobs import Job, JobCancelled
from whisperd.daemon.lanes.base import Lane, LaneFactory, LaneState
from whisperd.daemon.resources import Resources
from whisperd.daemon.windowed import WindowedRequest
from whisperd.daemon.windows import MAX_WINDOW_SECONDS, Window
from whisperd.engines.base import Engine, ModelInfo

log = logging.getLogger("whisperd.pool")

# After a failed cold start, its model gets no new cold workers for this long (the
# hot worker takes the work meanwhile) - not a spawn loop.
SPAWN_BACKOFF_S = 30.0
# A retried job counts as having waited this long: first in line (finite, so the
# policy's ageing arithmetic stays finite).
FIRST_IN_LINE_S = 1e6
# What `status()["counters"]` always holds, from 0; the engines' counters join them.
POOL_COUNTERS = ("retries", "dropped_queued", "dropped_running", "timeouts", "idle_exits", "crashes", "spawns",
                 "live_decodes_cancelled")


# Bytes of one second of decoded audio (float32 at 16 kHz).
BYTES_PER_SECOND = SAMPLE_RATE * 4
# A request is decoded whole up to this many windows' worth (a command, a short clip);
# past it the decode stops and the recording is streamed as windows instead.
WHOLE_DECODE_WINDOWS = 2


@dataclass(eq=False)
class Pending:
    """A unit of work: a whole request, or one window of a long one (`request` set)."""

    job: Job
    pcm: np.ndarray
    future: asyncio.Future  # a window's is its request's
    enqueued: float
    window: Window | None = None
    request: WindowedRequest | None = None
    live: int = 0  # a live session's decode, policy.LIVE_FINAL or LIVE_PARTIAL (served first)


class Pool:
    """`hot`: the hot worker's lanes, one per slot, sharing `engine` (default: theirs).
    `lane_factory` builds cold lanes (default: cold worker processes on that engine);
    `resources` says what memory a cold lane takes and the machine has (default: probed);
    `clock` is the time every scheduling fact is measured in, the lanes' own."""

    def __init__(self, config: DaemonConfig, hot: list[Lane], models: dict[str, ModelInfo], *,
                 engine: Engine | None = None, lane_factory: LaneFactory | None = None,
                 resources: Resources | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.hot = hot
        self.engine: Engine = engine if engine is not None else hot[0].engine  # type: ignore[attr-defined]
        self.models = models
        self.settings = policy.Settings(
            max_cold_workers=config.max_cold_workers,
            long_audio_s=config.long_audio_seconds,
            idle_timeout_s=config.worker_idle_timeout,
            reap_stagger_s=max(1.0, config.worker_idle_timeout / 6),
        )
        if lane_factory is None:
            from whisperd.daemon.lanes.cold import cold_lane_factory

            lane_factory = cold_lane_factory(config, self.engine)
        self._make_cold = lane_factory
        self._clock = clock
        self._hot_by_id = {lane.id: lane for lane in hot}
        self.cold: dict[str, Lane] = {}
        self.pending: list[Pending] = []
        self.running: dict[str, tuple[Lane, Pending]] = {}  # job id → (lane, pending)
        self.decoder = Decoder(config.max_audio_seconds)
        # Windows a long request may have queued or running at once: one for each lane there could be.
        self.lookahead = max(2, len(hot) + config.max_cold_workers)
        self.active = 0  # requests submitted and not yet answered
        self.requests: set[WindowedRequest] = set()  # long requests under way
        self.reserved_bytes = 0  # decoded audio the requests under way may hold (the budget's measure)
        self.resources = resources if resources is not None else Resources(
            self.engine.device, models, self.engine.compute_type)
        self.counters: Counter[str] = Counter({name: 0 for name in POOL_COUNTERS})
        self._retired_counters: Counter[str] = Counter()  # engine counters of cold lanes gone
        self.spawn_times: list[float] = []
        self.seconds_per_audio_s = 0.05
        self._next_id = 1
        self._last_reap = clock()
        self._tick: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()  # strong references: the loop keeps weak ones
        self._spawn_failed_at: dict[str, float] = {}  # model → when its cold start last failed
        self._closing = False
        self._work_changed = asyncio.Event()  # wakes `drain`
        self.on_change: Callable[[], None] = lambda: None

    # --- requests ----------------------------------------------------------------------

    def start(self) -> None:
        self._tick = asyncio.ensure_future(self._ticker())

    @property
    def queue_depth(self) -> int:
        return len(self.pending) + self.decoder.in_progress

    async def submit(self, job: Job, audio: bytes) -> tuple[Transcript, str]:
        """Decode, queue, run; returns the transcript and the name(s) of the lane(s) that served it."""
        if self._closing:
            raise ShuttingDown("the daemon is shutting down")
        if job.model not in self.models:
            raise ModelNotFound(f"model {job.model!r} is not served here")
        if self.active >= self.config.queue_size:
            raise Overloaded(f"{self.active} requests are under way; try again shortly")
        self.active += 1
        box = [audio]  # the only reference: whoever decodes it lets go of it
        del audio
        try:
            if self.config.window_mode == "whole":
                duration = await self._probe(job, box[0])
                return await self._submit_whole(job, box, self.config.max_audio_seconds, duration)
            # Most requests are commands: decoded whole at once, no probe first, but only up to
            # two windows' worth. A recording past that stops the decode there and is streamed.
            limit = min(self.config.max_audio_seconds, WHOLE_DECODE_WINDOWS * MAX_WINDOW_SECONDS)
            try:
                return await self._submit_whole(job, box, limit, limit, windows_over=MAX_WINDOW_SECONDS)
            except AudioTooLong:
                if limit >= self.config.max_audio_seconds:
                    raise
            duration = await self._probe(job, box[0])  # for progress; only a decode knows for sure
            return await self._submit_windows(job, box.pop(), duration)
        finally:
            self.active -= 1
            self._work_changed.set()

    async def _probe(self, job: Job, audio: bytes) -> float | None:
        try:
            return await self.decoder.probe(audio)
        except asyncio.CancelledError:
            job.cancelled = True
            self.counters["dropped_queued"] += 1
            raise

    async def submit_live(self, job: Job, pcm: np.ndarray, *, final: bool) -> Transcript:
        """One decode of a live session's utterance (already 16 kHz samples, at most a window):
        queued before every file's work. Cancelling the caller drops or stops the job."""
        if self._closing:
            raise ShuttingDown("the daemon is shutting down")
        if job.model not in self.models:
            raise ModelNotFound(f"model {job.model!r} is not served here")
        job.audio_seconds = len(pcm) / SAMPLE_RATE
        entry = Pending(job, pcm, asyncio.get_running_loop().create_future(), self._clock(),
                        live=policy.LIVE_FINAL if final else policy.LIVE_PARTIAL)
        del pcm  # the entry holds the samples, and lets go of them when the job ends
        transcript, _ = await self._run_queued(entry)
        return transcript

    async def _run_queued(self, entry: Pending) -> tuple[Transcript, str]:
        """Queue one job and wait for it; the caller going away drops it (or stops it running)."""
        self.pending.append(entry)
        self._schedule()
        try:
            return await asyncio.shield(entry.future)
        except asyncio.CancelledError:
            self.cancel(entry)
            raise

    def release(self, nbytes: int) -> None:
        self.reserved_bytes -= nbytes
        self._work_changed.set()

    def reserve(self, nbytes: int) -> None:
        """Hold `nbytes` of the decoded-audio budget, or refuse before it is exceeded (requests
        reserve here; a live session through the server)."""
        budget = self.config.decoded_audio_budget
        if self.reserved_bytes + nbytes > budget:
            raise Overloaded(
                f"the decoded-audio budget ({budget >> 20} MiB) is taken by the requests under way; "
                "try again shortly")
        self.reserved_bytes += nbytes

    async def _submit_whole(self, job: Job, box: list[bytes], limit: float, duration: float | None, *,
                            windows_over: float | None = None) -> tuple[Transcript, str]:
        """The request decoded whole (at most `limit` seconds) and run as one job on one lane;
        longer than `windows_over`, as windows of the decoded samples. `box` holds the encoded
        bytes, emptied once decoded (kept when the audio is longer than `limit`). `duration`
        (what the headers claim, or the limit) is reserved before decoding, so a refusal costs
        no expansion; then the reservation follows what was decoded."""
        held = int(min(duration, limit) * BYTES_PER_SECOND) if duration else 0
        self.reserve(held)
        try:
            try:
                pcm = await self.decoder.decode(box[0], limit)
            except AudioTooLong:
                raise  # the bytes stay in the box: the caller streams them
            except asyncio.CancelledError:
                box.clear()
                job.cancelled = True
                self.counters["dropped_queued"] += 1  # gone before it was even queued
                raise
            except BaseException:
                box.clear()
                raise
            finally:
                self._work_changed.set()
            box.clear()  # the encoded bytes are not needed any more: nothing here holds them
            if pcm.nbytes > held:
                self.reserve(pcm.nbytes - held)  # the headers said less than there was
            else:
                self.reserved_bytes -= held - pcm.nbytes  # the limit was reserved: give back the rest
            held = pcm.nbytes
            if windows_over is not None and len(pcm) > windows_over * SAMPLE_RATE:
                return await self._submit_windows(job, None, len(pcm) / SAMPLE_RATE, pcm=pcm)
            job.audio_seconds = len(pcm) / SAMPLE_RATE
            entry = Pending(job, pcm, asyncio.get_running_loop().create_future(), self._clock())
            del pcm  # the entry holds the samples, and lets go of them when the job ends
            return await self._run_queued(entry)
        finally:
            self.reserved_bytes -= held

    async def _submit_windows(self, job: Job, audio: bytes | None, duration: float | None, *,
                              pcm: np.ndarray | None = None) -> tuple[Transcript, str]:
        """The request as a chain of windows, decoded as they are needed (from `audio`, or cut
        from `pcm` decoded already) and run on any free lane."""
        # What it may hold at once: its windows in flight, the one being cut, the decoder's slack.
        held = int((self.lookahead + 2) * MAX_WINDOW_SECONDS * BYTES_PER_SECOND)
        self.reserve(held)
        request = WindowedRequest(job, asyncio.get_running_loop().create_future(), duration_hint=duration)
        job.audio_seconds = duration or 0.0
        self.requests.add(request)
        feeder = asyncio.ensure_future(self._feed(request, audio, pcm))
        del audio, pcm  # the feeder holds the bytes (or samples) until the last window is cut
        try:
            return await asyncio.shield(request.future)
        except asyncio.CancelledError:
            self._drop_request(request, None)
            raise
        finally:
            if not feeder.done():
                feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)
            self.requests.discard(request)
            self.reserved_bytes -= held
            self._work_changed.set()

    async def _feed(self, request: WindowedRequest, audio: bytes | None, pcm: np.ndarray | None) -> None:
        """Cut windows off the recording, as fast as lanes take them (at most `lookahead` ahead)."""
        from whisperd.daemon.audio import stream_audio
        from whisperd.daemon.windows import Windower, default_detector

        windower = Windower(default_detector(self.config.window_vad), request.job.chunking)
        chunks = iter([pcm]) if pcm is not None else stream_audio(audio, max_duration_s=self.config.max_audio_seconds)
        windows = windower.windows(chunks)
        del audio, pcm, chunks
        pulling: asyncio.Future | None = None
        try:
            while not (request.cancelled or self._closing):
                await request.room.wait()
                if request.cancelled or self._closing:
                    break
                self.decoder.in_progress += 1
                try:
                    pulling = self.decoder.next_window(windows)
                    window = await asyncio.shield(pulling)
                finally:
                    self.decoder.in_progress -= 1
                pulling = None
                request.decoded_samples = windower.total_samples
                if window is None:
                    request.source_done = True
                    self._settle_request(request)
                    break
                if request.cancelled:
                    break
                job = request.window_job(window)
                self.pending.append(Pending(job, window.pcm, request.future, self._clock(),
                                            window=window, request=request))
                if len(request.in_flight) >= self.lookahead:
                    request.room.clear()
                self._schedule()
        except WhisperdError as err:
            self._drop_request(request, err)
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # noqa: BLE001 - a bug in the cutter costs this request, not the daemon
            log.exception("request %s: cutting windows failed", request.job.id)
            self._drop_request(request, WhisperdError(f"decoding failed: {type(exc).__name__}"))
        finally:
            if pulling is not None and not pulling.done():
                # A decode thread is inside the stream: close it once that pull returns.
                pulling.add_done_callback(lambda _: windows.close())
            else:
                windows.close()  # closes the container: the encoded bytes go with it

    def _settle_request(self, request: WindowedRequest) -> None:
        if request.complete and not request.future.done():
            request.job.audio_seconds = request.decoded_samples / SAMPLE_RATE
            request.future.set_result((request.transcript(), request.lane_names()))

    def _drop_request(self, request: WindowedRequest, err: BaseException | None) -> None:
        """Stop every window of `request`: queued ones are dropped, running ones cancelled.
        `err` is its answer; None: the client went away."""
        request.cancelled = True
        request.job.cancelled = err is None or request.job.cancelled
        for entry in [p for p in self.pending if p.request is request]:
            self.pending.remove(entry)
            entry.job.cancelled = True
            self.counters["dropped_queued"] += 1
        for lane, entry in list(self.running.values()):
            if entry.request is request:
                lane.cancel(entry.job)
                self.counters["dropped_running"] += 1
        if not request.future.done():
            request.future.set_exception(err if err is not None else JobCancelled("the client went away"))
            request.future.exception()  # retrieved: the waiter may be gone
        request.room.set()  # the feeder wakes, sees it cancelled and stops
        self._work_changed.set()

    def cancel(self, entry: Pending) -> None:
        entry.job.cancelled = True
        # A live partial superseded by newer audio is not a request anyone lost: counted apart.
        dropped = "live_decodes_cancelled" if entry.live else None
        if entry in self.pending:
            self.pending.remove(entry)  # never started: simply dropped
            self.counters[dropped or "dropped_queued"] += 1
        elif entry.job.id in self.running:
            lane, _ = self.running[entry.job.id]
            lane.cancel(entry.job)  # stopped at its next segment
            self.counters[dropped or "dropped_running"] += 1
        if not entry.future.done():
            entry.future.set_exception(JobCancelled("the client went away"))
            entry.future.exception()  # retrieved: nobody else will
        self._work_changed.set()

    def tick(self) -> None:
        """Decide again with nothing new but the time (the ticker calls it every second)."""
        self._schedule()

    # --- the policy loop ---------------------------------------------------------------

    def _lanes(self) -> list[Lane]:
        return [*self.hot, *self.cold.values()]

    def _worker_facts(self, now: float) -> list[policy.WorkerFacts]:
        facts = []
        for lane in self._lanes():
            state = lane.state
            if state in (LaneState.DEAD, LaneState.STOPPING):
                continue
            if state is LaneState.LOADING:
                remaining = max(0.0, self._load_estimate() - (now - lane.spawned_at))
            else:
                remaining = max(0.0, lane.busy_until - now)
            facts.append(policy.WorkerFacts(
                lane.id, lane.kind, lane.model, state.value, remaining,
                now - lane.idle_since if state is LaneState.IDLE else 0.0, threads=lane.threads,
            ))
        return facts

    @staticmethod
    def _job_facts(entry: Pending, now: float) -> policy.JobFacts:
        job, waited = entry.job, now - entry.enqueued
        if entry.request is None:
            return policy.JobFacts(job.id, job.audio_seconds, job.model, waited, live=entry.live)
        request = entry.request
        known = max(request.duration_hint or 0.0, request.decoded_samples / SAMPLE_RATE)
        assert entry.window is not None  # a request's entries are its windows
        remaining = max(entry.window.seconds, known - entry.window.start_s)
        return policy.JobFacts(job.id, job.audio_seconds, job.model, waited, request_s=known,
                               remaining_s=remaining, window=True)

    def _load_estimate(self) -> float:
        return median(self.spawn_times[-9:]) if self.spawn_times else 1.5

    def _free_memory(self, now: float) -> float:
        """What a new cold lane could use; not even read when none may be started."""
        if len(self.cold) >= self.config.max_cold_workers:
            return 0.0
        return self.resources.free_mb(now)

    def _schedule(self) -> None:
        if self._closing and not self.pending:
            return
        now = self._clock()
        if not self._may_act(now):
            return
        facts = policy.Facts(
            jobs=tuple(self._job_facts(p, now) for p in self.pending),
            workers=tuple(self._worker_facts(now)),
            cpu_cores=os.cpu_count() or 1,
            free_memory_mb=self._free_memory(now),
            worker_memory_mb={m: self.resources.worker_mb(m) for m in {p.job.model for p in self.pending}},
            seconds_per_audio_s=self.seconds_per_audio_s,
            load_s=self._load_estimate(),
            since_last_reap_s=now - self._last_reap,
            no_spawn_models=frozenset(m for m, t in self._spawn_failed_at.items() if now - t < SPAWN_BACKOFF_S),
        )
        decision = policy.decide(facts, self.settings)
        for job_id, lane_id in decision.assign:
            entry = next(p for p in self.pending if p.job.id == job_id)
            self.pending.remove(entry)
            lane = self._hot_by_id.get(lane_id) or self.cold[lane_id]
            lane.claim(now + entry.job.audio_seconds * self.seconds_per_audio_s)
            self.running[job_id] = (lane, entry)
            self._background(self._run_on(lane, entry))
        for model, threads in decision.spawn:
            if not self._closing:
                self._spawn(model, threads)
        for wid in decision.reap:
            self._last_reap = now
            lane = self.cold.get(wid)
            if lane is not None:
                log.info("%s idle for %.0f s: stopping it", wid, now - lane.idle_since)
                self.counters["idle_exits"] += 1
                lane.close()
        if decision.assign or decision.spawn or decision.reap:
            self.on_change()

    def _may_act(self, now: float) -> bool:
        """False when no decision could do anything: skip gathering the facts.

        Nothing is queued and no idle cold lane is due to exit; or work is queued
        but every lane is busy or loading, no lane may be started and none is
        idle to reap. At the framework's ceiling the queue is deep and every lane
        busy on almost every event.
        """
        if self.pending:
            room = len(self.cold) < self.config.max_cold_workers
            return room or any(lane.state is LaneState.IDLE for lane in self._lanes())
        return bool(self.cold) and now - self._last_reap >= self.settings.reap_stagger_s

    def _background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_on(self, lane: Lane, entry: Pending) -> None:
        job = entry.job
        started = self._clock()
        if entry.request is not None:
            entry.request.before_run(job)
        try:
            transcript = await lane.run(job, entry.pcm)
        except WorkerFailed as err:
            self._settle_failure(lane, entry, err)
        except BaseException as err:  # noqa: B902 - every outcome must reach the waiting client
            self._fail(entry, err)
        else:
            took = self._clock() - started
            if job.audio_seconds >= 1:
                # Smoothed processing cost per audio second, for the policy's estimates.
                self.seconds_per_audio_s = 0.7 * self.seconds_per_audio_s + 0.3 * (took / job.audio_seconds)
            self._succeed(entry, transcript, lane.name)
        finally:
            self.running.pop(job.id, None)
            retried = entry in self.pending
            if not retried and (entry.future.done() or job.cancelled or entry.request is not None):
                entry.pcm = np.empty(0, np.float32)  # a window's samples go once it has run
            self._work_changed.set()
            self._schedule()
            self.on_change()

    def _succeed(self, entry: Pending, transcript: Transcript, lane_name: str) -> None:
        request = entry.request
        if request is None:
            if not entry.future.done():
                entry.future.set_result((transcript, lane_name))
            return
        if request.cancelled:
            return
        assert entry.window is not None
        request.window_done(entry.window, transcript, lane_name)
        if len(request.in_flight) < self.lookahead:
            request.room.set()
        self._settle_request(request)

    def _fail(self, entry: Pending, err: BaseException) -> None:
        """The job (or window) failed for a reason a retry would not change: answer its request."""
        if entry.request is not None:
            if isinstance(err, JobCancelled) and entry.request.cancelled:
                return  # the request was dropped already
            self._drop_request(entry.request, err)
        elif not entry.future.done():
            entry.future.set_exception(err)

    def _settle_failure(self, lane: Lane, entry: Pending, err: WorkerFailed) -> None:
        job = entry.job
        timed_out = isinstance(err, WorkerTimeout)  # it was killed: the job itself is the likely cause
        if timed_out:
            self.counters["timeouts"] += 1
        if lane.state is LaneState.DEAD or timed_out:
            log.warning("request %s: %s", job.id, err.message)
        # No retry once closing: the workers are being stopped, and a retry would land on whatever is left.
        if not timed_out and not self._closing and job.retries < 1 and not job.cancelled and not entry.future.done():
            job.retries += 1
            self.counters["retries"] += 1
            log.info("request %s: retrying on another worker", job.id)
            entry.enqueued = self._clock() - FIRST_IN_LINE_S
            self.pending.insert(0, entry)
            return
        self._fail(entry, err)

    # --- cold lanes --------------------------------------------------------------------

    def _spawn(self, model: str, threads: int) -> None:
        if model not in self.models:  # removed by a rescan while its jobs waited
            self._fail_unservable(model, "it was removed from this host")
            return
        wid = f"cold-{self._next_id}"
        self._next_id += 1
        lane = self._make_cold(wid, self.models[model], threads)
        self.cold[wid] = lane
        self.counters["spawns"] += 1
        log.info("%s: starting for model %s (%d threads)", wid, model, threads)
        self._background(self._watch(lane))

    async def _watch(self, lane: Lane) -> None:
        await lane.start()
        if lane.state is LaneState.DEAD:
            self.counters["crashes"] += 1
            reason = lane.fatal.message if lane.fatal else "it exited while loading"
            log.error("%s failed to start: %s (no new %s workers for %.0f s)", lane.id, reason,
                      lane.model, SPAWN_BACKOFF_S)
            self._spawn_failed_at[lane.model] = self._clock()
            self._retire(lane)
            self._fail_unservable(lane.model, reason)
        else:
            took = lane.spawn_to_ready_s or 0.0
            self.spawn_times.append(took)
            self.resources.measured(lane.model, lane.pid)
            log.info("%s ready in %.2f s (pid %s, model %s)", lane.id, took, lane.pid, lane.model)
            self._schedule()
            self.on_change()
            await lane.exited()
            expected = self._closing or lane.closing
            self._retire(lane)
            if not expected:
                self.counters["crashes"] += 1
                log.warning("%s (pid %s) exited unexpectedly (exit code %s)", lane.id, lane.pid, lane.exit_code)
            await lane.wait_closed(5)
        self._schedule()
        self.on_change()

    def _retire(self, lane: Lane) -> None:
        """A cold lane is gone: forget it, keep what its engine counted."""
        if self.cold.pop(lane.id, None) is not None:
            self._retired_counters.update(lane.counters())

    def _fail_unservable(self, model: str, reason: str) -> None:
        """Jobs for a model no lane can load get an answer, not an endless wait."""
        if any(lane.model == model for lane in self._lanes() if lane.state is not LaneState.DEAD):
            return
        for entry in [p for p in self.pending if p.job.model == model]:
            if entry in self.pending:  # a request's other windows go with the first
                self.pending.remove(entry)
                self._fail(entry, WorkerFailed(f"no worker could load model {model}: {reason}"))
        self._work_changed.set()

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.tick()

    # --- status and shutdown -----------------------------------------------------------

    def engine_counters(self) -> Counter[str]:
        """The engines' counters: the hot engine's, each cold lane's, and those of lanes gone."""
        total = Counter(self._retired_counters)
        total.update(self.engine.counters())
        for lane in self.cold.values():
            total.update(lane.counters())
        return total

    def status(self) -> dict[str, Any]:
        return {
            "queue": self.queue_depth,
            "windowed": len(self.requests),
            "decoded_audio_reserved": self.reserved_bytes,
            "running": len(self.running),
            # The limits `submit` refuses by, so a front can say "full" before a request is refused.
            "active": self.active,
            "queue_size": self.config.queue_size,
            "decoded_audio_budget": self.config.decoded_audio_budget,
            "request_reserve": int(WHOLE_DECODE_WINDOWS * MAX_WINDOW_SECONDS * BYTES_PER_SECOND),
            "max_cold_workers": self.config.max_cold_workers,
            "workers": {"hot": 1, "cold": len(self.cold)},
            "hot_slots": len(self.hot),
            "loading": sum(1 for lane in self.cold.values() if lane.state is LaneState.LOADING),
            "lanes": [lane.status() for lane in self._lanes()],
            "spawns": self.counters["spawns"],
            "crashes": self.counters["crashes"],
            "spawn_to_ready_s": round(self._load_estimate(), 3) if self.spawn_times else None,
            "counters": {**self.engine_counters(), **self.counters},
        }

    def set_models(self, models: dict[str, ModelInfo]) -> None:
        """The models requests may name from now on (a rescan). Work already queued or running
        for a model no longer listed finishes on the lanes that have it."""
        for name in set(self.models) | set(models):
            if self.models.get(name) != models.get(name):
                self.resources.forget(name)
        self.models.clear()  # in place: the resources read this same mapping
        self.models.update(models)

    def loaded_models(self) -> set[str]:
        return {lane.model for lane in self._lanes() if lane.state in (LaneState.IDLE, LaneState.BUSY)}

    def _has_work(self) -> bool:
        return bool(self.pending or self.running or self.decoder.in_progress or self.requests)

    async def drain(self, grace: float) -> None:
        """Finish queued and running work within `grace`, then stop every lane."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self._has_work() and (remaining := deadline - loop.time()) > 0:
            self._work_changed.clear()
            try:
                await asyncio.wait_for(self._work_changed.wait(), remaining)
            except asyncio.TimeoutError:
                break
        self._closing = True
        for request in list(self.requests):
            self._drop_request(request, ShuttingDown("the daemon is shutting down"))
        for entry in self.pending:
            if not entry.future.done():
                entry.future.set_exception(ShuttingDown("the daemon is shutting down"))
        self.pending.clear()
        if self._tick is not None:
            self._tick.cancel()
        cold = list(self.cold.values())
        for lane in cold:
            lane.close()
        await asyncio.gather(*(lane.wait_closed(5) for lane in cold), return_exceptions=True)
        for lane in self.hot:
            lane.close()
        self.decoder.close()
