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

import numpy as np

from whisperd.core.transcript import Transcript
from whisperd.daemon.jobs import Job, JobCancelled
from whisperd.engines.base import Engine


class HotLane:
    kind = "hot"
    name = "hot"  # what clients see: the slots are one worker

    def __init__(self, engine: Engine, model: str, slot: int = 1) -> None:
        self.engine = engine
        self.model = model
        self.id = "hot" if slot == 1 else f"hot-{slot}"
        self.state = "idle"
        self.busy_until = 0.0
        self.idle_since = time.monotonic()
        self.served = 0
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=self.id)

    async def run(self, job: Job, pcm: np.ndarray) -> Transcript:
        loop = asyncio.get_running_loop()
        self.state = "busy"
        try:
            if job.cancelled:
                raise JobCancelled("the client went away before its request started")
            callback = job.segment_callback(loop)
            # shield: a cancelled await must not free the lane while the thread still runs.
            future = loop.run_in_executor(self._thread, self.engine.transcribe, pcm, job.options, callback)
            return await asyncio.shield(future)
        finally:
            self.state = "idle"
            self.idle_since = time.monotonic()
            self.served += 1

    def cancel(self, job: Job) -> None:
        job.cancelled = True

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)


def hot_lanes(engine: Engine, model: str) -> list[HotLane]:
    """One lane per request the engine decodes at once (its slots)."""
    return [HotLane(engine, model, i + 1) for i in range(max(1, engine.concurrency))]
