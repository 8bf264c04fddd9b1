"""A job: one request's transcription as the pool and its lanes see it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Callable

from whisperd.core.chunking import Chunking
from whisperd.core.errors import JobCancelled
from whisperd.core.transcript import Segment
from whisperd.engines.base import Options

__all__ = ["Job", "JobCancelled"]


@dataclass
class Job:
    id: str
    options: Options
    model: str
    # Called on the event loop for each decoded segment, with the fraction of audio done.
    on_segment: Callable[[Segment, float], None] | None = None
    cancelled: bool = False
    audio_seconds: float = 0.0
    retries: int = 0
    # How the client asked a long recording to be cut into windows (OpenAI's
    # chunking_strategy); None: the daemon's defaults. Read by the windower.
    chunking: Chunking | None = None

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
