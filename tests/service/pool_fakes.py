"""Fakes for building `Pool` in-process: lanes whose jobs the test finishes, a clock it moves.

A fake lane's `run` parks the job on a future and hands (job, future) to the
test (`next_job`); the test settles the future with a transcript or an error.
Nothing here sleeps: tests await those hand-overs and `until`, which only
yields to the event loop.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from tests.stack.reliability import media
from whisperd.core.errors import WorkerFailed
from whisperd.core.settings import build
from whisperd.core.transcript import Transcript
from whisperd.daemon.config import DAEMON_SETTINGS, DaemonConfig
from whisperd.daemon.jobs import Job
from whisperd.daemon.lanes.base import Lane, LaneState
from whisperd.daemon.pool import Pool
from whisperd.engines.base import ModelInfo, Options

MODEL = ModelInfo("tiny.en", "ctranslate2", Path("/nonexistent/tiny.en"), multilingual=False)
BASE = ModelInfo("base", "ctranslate2", Path("/nonexistent/base"), multilingual=True)
# Not synchronisation: only so that a broken pool fails a test instead of hanging the suite.
GUARD_S = 10.0


def config(**settings: Any) -> DaemonConfig:
    """A daemon config from these settings (as flags would give them) over the defaults."""
    values = {"long_audio_seconds": 5, "max_cold_workers": 2, "worker_idle_timeout": 60, **settings}
    return build(DaemonConfig, DAEMON_SETTINGS, "whisperd", {k: str(v) for k, v in values.items()}, {},
                 "/dev/null")


def wav(seconds: float) -> bytes:
    """A plain 16 kHz mono 16-bit WAV of silence (8 s or less decodes on the loop)."""
    return media.wav(b"\0\0" * int(seconds * 16000))


def job(job_id: str, model: str = "tiny.en") -> Job:
    return Job(job_id, Options(), model)


def transcript(text: str = "done") -> Transcript:
    return Transcript(text, "en", 1.0, (), "transcribe")


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeEngine:
    name, device, compute_type, concurrency = "fake", "cpu", "none", 1

    def __init__(self) -> None:
        self.counted: Counter[str] = Counter()

    def counters(self) -> dict[str, int]:
        return dict(self.counted)


class FakeResources:
    """Plenty of memory, so the policy alone decides whether a cold lane starts."""

    def __init__(self, free_mb: float = 64000.0, worker_mb: float = 400.0) -> None:
        self._free, self._worker = free_mb, worker_mb

    def free_mb(self, now: float) -> float:
        return self._free

    def worker_mb(self, model: str) -> float:
        return self._worker

    def measured(self, model: str, pid: int | None) -> None:
        pass

    def forget(self, model: str) -> None:
        pass


class FakeLane(Lane):
    """A hot slot: ready when built; each job waits on a future the test settles."""

    kind = "hot"

    def __init__(self, lane_id: str = "hot", model: str = "tiny.en", *, name: str = "hot",
                 state: LaneState = LaneState.IDLE, clock: Callable[[], float] | None = None) -> None:
        super().__init__(lane_id, name, model, state=state, clock=clock or FakeClock())
        self.started: asyncio.Queue[tuple[Job, asyncio.Future]] = asyncio.Queue()
        self.jobs: list[Job] = []  # every job it ran, in order
        self.cancelled: list[Job] = []
        self.closed = False
        self.engine_counts: Counter[str] = Counter()

    async def run(self, job: Job, pcm: Any) -> Transcript:
        self._begin_job()
        future = asyncio.get_running_loop().create_future()
        self.jobs.append(job)
        self.started.put_nowait((job, future))
        try:
            return await future
        finally:
            self._finished_job()

    async def next_job(self) -> tuple[Job, asyncio.Future]:
        """The next job it runs and the future that finishes it."""
        return await asyncio.wait_for(self.started.get(), GUARD_S)

    def cancel(self, job: Job) -> None:
        job.cancelled = True
        self.cancelled.append(job)

    def close(self) -> None:
        self._begin_close()
        self.closed = True

    def counters(self) -> dict[str, int]:
        return dict(self.engine_counts)


class FakeColdLane(FakeLane):
    """A cold lane: LOADING until started, then IDLE; dies when told to, or when closed."""

    kind = "cold"

    def __init__(self, lane_id: str, model: str, *, clock: Callable[[], float]) -> None:
        super().__init__(lane_id, model, name=lane_id, state=LaneState.LOADING, clock=clock)
        self._dead = asyncio.Event()
        self.fail_start: WorkerFailed | None = None

    async def start(self) -> None:
        if self.fail_start is not None:
            self.fatal = self.fail_start
            self.die()
        else:
            self._set_state(LaneState.IDLE)

    async def exited(self) -> None:
        await self._dead.wait()

    def die(self) -> None:
        """The process is gone (killed, crashed, or exited when asked)."""
        self._set_state(LaneState.DEAD)
        self._dead.set()

    def close(self) -> None:
        super().close()
        self.die()  # a fake process exits at once when asked


class ColdFactory:
    """The pool's `lane_factory`: builds `FakeColdLane`s and hands each to the test."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.created: asyncio.Queue[FakeColdLane] = asyncio.Queue()
        self.lanes: list[FakeColdLane] = []
        self.fail_next_start: WorkerFailed | None = None

    async def next_lane(self) -> FakeColdLane:
        return await asyncio.wait_for(self.created.get(), GUARD_S)

    def __call__(self, lane_id: str, model: ModelInfo, threads: int) -> Lane:
        lane = FakeColdLane(lane_id, model.name, clock=self.clock)
        lane.fail_start, self.fail_next_start = self.fail_next_start, None
        self.lanes.append(lane)
        self.created.put_nowait(lane)
        return lane


def make_pool(hot: list[Lane] | None = None, *, clock: FakeClock | None = None,
              engine: FakeEngine | None = None, **settings: Any) -> tuple[Pool, ColdFactory]:
    clock = clock or FakeClock()
    hot = hot or [FakeLane(clock=clock)]
    factory = ColdFactory(clock)
    engine = engine or getattr(hot[0], "engine", None) or FakeEngine()  # real hot lanes bring theirs
    pool = Pool(config(**settings), hot, {"tiny.en": MODEL, "base": BASE}, engine=engine,
                lane_factory=factory, resources=FakeResources(), clock=clock)
    return pool, factory


async def until(predicate: Callable[[], bool], what: str = "the condition", turns: int = 200) -> None:
    """Let the event loop run until `predicate` holds; fail after `turns` turns (no wall time)."""
    for _ in range(turns):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{what} did not happen in {turns} turns of the event loop")


async def answer(task: asyncio.Future) -> Any:
    """What the caller of `submit` gets, once the loop has settled (a hang fails instead)."""
    await until(task.done, "the caller's answer")
    return task.result()


def submit(pool: Pool, job_: Job, seconds: float) -> asyncio.Task:
    return asyncio.ensure_future(pool.submit(job_, wav(seconds)))
