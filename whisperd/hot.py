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
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from whisperd.engines.base import Engine, Options, Segment, Transcript
from whisperd.errors import WhisperdError


class JobCancelled(WhisperdError):
    code = "cancelled"


@dataclass
class Job:
    id: str
    options: Options
    model: str
    # Called on the event loop for each decoded segment, with the fraction of audio done.
    on_segment: Callable[[Segment, float], None] | None = None
    cancelled: bool = False
    audio_seconds: float = 0.0
    queued_at: float = field(default_factory=time.monotonic)
    retries: int = 0

    def fraction_done(self, seg: Segment) -> float:
        return min(1.0, seg.end / self.audio_seconds) if self.audio_seconds else 1.0

    def segment_callback(self, loop: asyncio.AbstractEventLoop) -> Callable[[Segment], None]:
        """The callback an engine calls from its thread: forward to the loop, or stop."""

        def on_segment(seg: Segment) -> None:
            if self.cancelled:
                raise JobCancelled("the client went away")
            if self.on_segment is not None:
                loop.call_soon_threadsafe(self.on_segment, seg, self.fraction_done(seg))

        return on_segment


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
