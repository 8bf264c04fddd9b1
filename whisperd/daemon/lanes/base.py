"""The one contract every lane keeps: the hot worker's slots and cold worker processes alike.

A lane runs one job at a time. The pool reads what the policy needs (id, kind,
model, state, busy_until, idle_since, spawned_at) and calls `claim`, `run`,
`cancel` and `close`; it never branches on `kind`, which is data for the
policy's facts ("keep the hot lane for short work"), nothing more.

Only the lane sets its `state`. A lane's life:

    LOADING ──start()──► IDLE ◄──run() ends── BUSY
       │                   │ └──claim()──────────▲
       ▼                   ▼ close()
      DEAD ◄─────────── STOPPING

Lanes that are ready when built (the hot slots) begin IDLE and never die;
`start`, `exited` and `wait_closed` then do nothing (the defaults here).
"""

from __future__ import annotations

import abc
import asyncio
import enum
import time
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from whisperd.core.errors import WhisperdError

if TYPE_CHECKING:  # numpy only where audio is
    import numpy as np

    from whisperd.core.transcript import Transcript
    from whisperd.daemon.jobs import Job
    from whisperd.engines.base import ModelInfo


class LaneState(enum.Enum):
    LOADING = "loading"  # being brought up: holds no job
    IDLE = "idle"  # ready for a job
    BUSY = "busy"  # claimed for a job, or running one
    STOPPING = "stopping"  # asked to exit: takes nothing new
    DEAD = "dead"  # gone for good


class Lane(abc.ABC):
    # "hot" | "cold": what the policy needs to know of a lane, as data.
    kind: ClassVar[str]

    def __init__(self, lane_id: str, name: str, model: str, *, state: LaneState = LaneState.IDLE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.id = lane_id
        self.name = name  # what clients see (the hot worker's slots share one)
        self.model = model
        self._clock = clock
        self._state = state
        self.spawned_at = clock()
        self.idle_since = self.spawned_at
        self.busy_until = 0.0  # the pool's estimate of when the job it runs ends
        self.served = 0
        self.pid: int | None = None  # its own process, if it has one
        self.threads = 1  # CPU threads it decodes with (a fact for the policy)
        self.fatal: WhisperdError | None = None  # why it could not start, when it says
        self._close_requested = False

    @property
    def state(self) -> LaneState:
        return self._state

    # --- what the pool calls -------------------------------------------------------------

    def claim(self, busy_until: float) -> None:
        """Taken for a job about to run: the next scheduling decision sees it busy."""
        if self._state is not LaneState.IDLE:
            raise RuntimeError(f"lane {self.id} is {self._state.value}, not idle")
        self._state = LaneState.BUSY
        self.busy_until = busy_until

    @abc.abstractmethod
    async def run(self, job: "Job", pcm: "np.ndarray") -> "Transcript":
        """Transcribe one job's samples; raises `WorkerFailed` (or `WorkerTimeout`) when the
        lane, not the request, is at fault, and `JobCancelled` when the job was cancelled."""

    @abc.abstractmethod
    def cancel(self, job: "Job") -> None:
        """Stop `job` at its next segment boundary (a no-op when it is not this lane's)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Take nothing new and let go of what the lane holds; see `wait_closed`."""

    async def start(self) -> None:
        """Bring the lane up; returns once it is IDLE or DEAD (`fatal` may say why)."""

    async def exited(self) -> None:
        """Returns once the lane has stopped for good (never, for a lane that cannot die)."""
        await asyncio.Event().wait()

    async def wait_closed(self, timeout: float) -> None:
        """After `close`: wait up to `timeout` for the lane to end, then force it."""

    @property
    def closing(self) -> bool:
        """Whether it was asked to stop: then its exit is no crash."""
        return self._close_requested

    @property
    def exit_code(self) -> int | None:
        return None

    @property
    def spawn_to_ready_s(self) -> float | None:
        return None

    def counters(self) -> dict[str, int]:
        """The engine counters this lane owns (a lane sharing the pool's engine owns none)."""
        return {}

    def status(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "model": self.model, "state": self._state.value,
                "served": self.served}

    # --- for subclasses ------------------------------------------------------------------

    def _set_state(self, state: LaneState) -> None:
        if state is LaneState.IDLE and self._state is not LaneState.IDLE:
            self.idle_since = self._clock()
        self._state = state

    def _begin_job(self) -> None:
        """`run` was called: busy, whether or not the pool claimed the lane first."""
        if self._state is LaneState.IDLE:
            self._set_state(LaneState.BUSY)

    def _begin_close(self) -> None:
        self._close_requested = True
        if self._state is not LaneState.DEAD:
            self._set_state(LaneState.STOPPING)

    def _finished_job(self) -> None:
        """A job ended (done, failed or cancelled): idle again unless stopping or dead."""
        self.served += 1
        if self._state is LaneState.BUSY:
            self._set_state(LaneState.IDLE)


# Builds a lane for the pool to start: (lane id, model, CPU threads) → a LOADING lane.
LaneFactory = Callable[[str, "ModelInfo", int], Lane]
