"""The hot worker: the resident model, in the daemon's own process.

It has one lane per slot, each with its own thread; the slots share the one
model (CTranslate2 replicas share weights), so several short requests decode
at once. A job whose client went away is stopped at the next segment boundary (the
engines call back once per segment).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from whisperd.core.transcript import Transcript
from whisperd.daemon.jobs import Job, JobCancelled
from whisperd.daemon.lanes.base import Lane, LaneState
from whisperd.engines.base import Engine


class HotLane(Lane):
    kind = "hot"

    def __init__(self, engine: Engine, model: str, slot: int = 1, *, threads: int = 1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        # name "hot" for every slot: clients see one worker.
        super().__init__("hot" if slot == 1 else f"hot-{slot}", "hot", model, state=LaneState.IDLE, clock=clock)
        self.engine = engine
        self.threads = threads
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=self.id)

    async def run(self, job: Job, pcm: np.ndarray) -> Transcript:
        loop = asyncio.get_running_loop()
        self._begin_job()
        try:
            if job.cancelled:
                raise JobCancelled("the client went away before its request started")
            callback = job.segment_callback(loop)
            # shield: a cancelled await must not free the lane while the thread still runs.
            future = loop.run_in_executor(self._thread, self.engine.transcribe, pcm, job.options, callback)
            return await asyncio.shield(future)
        finally:
            self._finished_job()

    def cancel(self, job: Job) -> None:
        job.cancelled = True

    def close(self) -> None:
        self._begin_close()
        self._thread.shutdown(wait=False, cancel_futures=True)


def hot_lanes(engine: Engine, model: str, threads: int = 1) -> list[HotLane]:
    """One lane per request the engine decodes at once (its slots), `threads` CPU threads each."""
    return [HotLane(engine, model, i + 1, threads=threads) for i in range(max(1, engine.concurrency))]
