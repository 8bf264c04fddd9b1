"""The hot worker: one resident model, requests served in turn, off the event loop.

Decoding runs in a small thread pool of its own so the next request's audio is
ready when the model frees up; inference runs on one dedicated thread. A job
whose client went away is dropped from the queue, and stopped at the next
segment boundary when it is already running (engines call back per segment).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from whisperd.engines.base import Engine, Options, Segment, Transcript
from whisperd.errors import Overloaded, WhisperdError

log = logging.getLogger("whisperd.hot")


class JobCancelled(WhisperdError):
    code = "cancelled"


@dataclass
class Job:
    id: str
    audio: bytes
    options: Options
    max_seconds: float
    # Called on the event loop for each decoded segment (progress, streaming).
    on_segment: Callable[[Segment, float], None] | None = None
    cancelled: bool = False
    started: bool = False  # holds the model; cancel by flag, not by task.cancel()
    audio_seconds: float = 0.0
    queued_at: float = field(default_factory=time.monotonic)


class HotWorker:
    def __init__(self, engine: Engine, *, queue_size: int) -> None:
        self.engine = engine
        self.queue_size = queue_size
        self._infer = ThreadPoolExecutor(1, thread_name_prefix="infer")
        self._decode = ThreadPoolExecutor(2, thread_name_prefix="decode")
        self._lock = asyncio.Lock()
        self.waiting = 0
        self.running = 0
        self.served = 0

    @property
    def busy(self) -> bool:
        return self.running > 0

    async def run(self, job: Job) -> Transcript:
        if self.waiting + self.running >= self.queue_size:
            raise Overloaded(f"{self.waiting} requests are waiting; try again shortly")
        loop = asyncio.get_running_loop()
        self.waiting += 1
        queued = True
        try:
            from whisperd.audio import decode_audio

            pcm = await loop.run_in_executor(
                self._decode, lambda: decode_audio(job.audio, max_duration_s=job.max_seconds)
            )
            job.audio = b""  # the encoded bytes are no longer needed; free them early
            job.audio_seconds = len(pcm) / 16000
            async with self._lock:
                self.waiting -= 1
                queued = False
                job.started = True
                self.running += 1
                try:
                    return await loop.run_in_executor(self._infer, self._transcribe, job, pcm, loop)
                finally:
                    self.running -= 1
                    self.served += 1
        finally:
            if queued:
                self.waiting -= 1

    def _transcribe(self, job: Job, pcm, loop: asyncio.AbstractEventLoop) -> Transcript:
        if job.cancelled:
            raise JobCancelled("the client went away before its request started")

        def on_segment(seg: Segment) -> None:
            if job.cancelled:
                raise JobCancelled("the client went away")
            if job.on_segment is not None:
                fraction = min(1.0, seg.end / job.audio_seconds) if job.audio_seconds else 1.0
                loop.call_soon_threadsafe(job.on_segment, seg, fraction)

        return self.engine.transcribe(pcm, job.options, on_segment)

    def close(self) -> None:
        self._infer.shutdown(wait=False, cancel_futures=True)
        self._decode.shutdown(wait=False, cancel_futures=True)
