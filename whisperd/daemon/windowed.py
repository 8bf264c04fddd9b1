"""One long request as a chain of windows: what it has sent, what came back, in order.

The pool runs each window as a job of its own on whatever lane is free, so
windows finish out of order; this object puts them back in order. A window's
segments are handed to the client (progress frames, SSE deltas) only once every
window before it is done, shifted to the recording's time, renumbered. The
whole transcript is built from the windows when the last one is in.

Text context does not flow from window to window: each window is decoded with
the client's prompt only, so any free lane can take the next one at once
(docs/windows.md has the measurements behind that choice). The language does:
a multilingual request without a language takes the first window's, once known.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING

from whisperd.core.constants import SAMPLE_RATE
from whisperd.core.transcript import Segment, Transcript, Word, join_segment_text
from whisperd.daemon.jobs import Job

if TYPE_CHECKING:
    from whisperd.daemon.windows import Window


class WindowedRequest:
    def __init__(self, job: Job, future: asyncio.Future, *, duration_hint: float | None) -> None:
        self.job = job
        self.future = future
        self.duration_hint = duration_hint  # the headers' claim, for progress until the end is known
        self.sent = 0  # windows handed to the pool
        self.in_flight: dict[int, Job] = {}  # window index → its job, queued or running
        self.results: dict[int, tuple["Window", Transcript]] = {}  # done, not yet emitted
        self.segments: list[Segment] = []  # emitted, in order
        self.next_emit = 0
        self.language: str | None = None
        self.lanes: list[str] = []  # lane names that served windows, first use first
        self.decoded_samples = 0
        self.source_done = False  # the decoder has yielded its last window
        self.cancelled = False
        self.room = asyncio.Event()  # set when fewer windows are in flight than the lookahead
        self.room.set()

    # --- windows out -------------------------------------------------------------------

    def window_job(self, window: "Window") -> Job:
        """The job that runs one window: the request's options, its own id and length."""
        options = dataclasses.replace(self.job.options, short_path=False)  # windows want timestamps
        # Zero-padded: the policy breaks ties by id, and window 10 comes after window 9.
        job = Job(f"{self.job.id}/{window.index:06d}", options, self.job.model,
                  audio_seconds=window.seconds)
        self.in_flight[window.index] = job
        self.sent += 1
        return job

    def before_run(self, job: Job) -> None:
        """Just before a window starts: give it the language the first window found."""
        if job.options.language is None and self.language is not None:
            job.options = dataclasses.replace(job.options, language=self.language)

    # --- windows back ------------------------------------------------------------------

    def window_done(self, window: "Window", transcript: Transcript, lane: str) -> None:
        self.in_flight.pop(window.index, None)
        if lane not in self.lanes:
            self.lanes.append(lane)
        if window.index == 0 or self.language is None:  # the first window's, once it is in
            self.language = transcript.language
        self.results[window.index] = (window, transcript)
        while self.next_emit in self.results:
            self._emit(*self.results.pop(self.next_emit))
            self.next_emit += 1

    def _emit(self, window: "Window", transcript: Transcript) -> None:
        shift, frames = window.start_s, window.start // (SAMPLE_RATE // 100)
        for seg in transcript.segments:
            moved = dataclasses.replace(
                seg, id=len(self.segments), seek=seg.seek + frames,
                start=round(seg.start + shift, 3), end=round(seg.end + shift, 3),
                words=tuple(Word(w.word, round(w.start + shift, 3), round(w.end + shift, 3), w.probability)
                            for w in seg.words),
            )
            self.segments.append(moved)
            if self.job.on_segment is not None and not self.cancelled:
                self.job.on_segment(moved, self._fraction(moved.end))

    def _fraction(self, at: float) -> float:
        total = self.duration_hint if not self.source_done else self.decoded_samples / SAMPLE_RATE
        return min(1.0, at / total) if total else 0.0

    @property
    def complete(self) -> bool:
        return self.source_done and not self.in_flight and self.next_emit == self.sent

    def transcript(self) -> Transcript:
        duration = self.decoded_samples / SAMPLE_RATE
        language = self.language or self.job.options.language or "en"
        return Transcript(join_segment_text(self.segments), language, duration, tuple(self.segments),
                          self.job.options.task)

    def lane_names(self) -> str:
        return ",".join(self.lanes) or "none"
