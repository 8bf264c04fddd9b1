"""Encoded audio → 16 kHz mono float32 samples, for the pool, off the event loop.

Decoding a compressed file takes milliseconds to seconds of CPU, so it runs on
a small thread pool of its own; a plain 16 kHz WAV of a few seconds only needs
its samples converted and is decoded in place. `in_progress` counts the decodes
under way: they are queued work the scheduler cannot see yet.

A long recording is not decoded here whole: `next_window` pulls the next window
from a `windows.Windower` stream on the same threads (one pull at a time per
stream), so memory holds the windows in flight, never the recording.
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np

# A plain 16 kHz mono PCM WAV up to this size (8 s) is decoded on the event loop:
# its samples only need converting (~0.1 ms), and a thread hand-off costs more.
INLINE_DECODE_BYTES = 256 * 1024


class Decoder:
    def __init__(self, max_audio_s: float, threads: int = 2) -> None:
        self.max_audio_s = max_audio_s
        self.in_progress = 0
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix="decode")

    async def decode(self, audio: bytes, max_audio_s: float | None = None) -> np.ndarray:
        # Lazy: PyAV loads FFmpeg's libraries, which tests of the pool do not need.
        from whisperd.daemon.audio import decode_audio, is_plain_wav

        limit = self.max_audio_s if max_audio_s is None else max_audio_s
        decode = functools.partial(decode_audio, audio, max_duration_s=limit)
        if len(audio) <= INLINE_DECODE_BYTES and is_plain_wav(audio):
            return decode()  # microseconds: cheaper than a hand-off to a decode thread
        return await self._off_loop(decode)

    async def probe(self, audio: bytes) -> float | None:
        """The duration the file's headers state (None: they do not say)."""
        from whisperd.daemon.audio import is_plain_wav, probe_duration

        if is_plain_wav(audio):
            return probe_duration(audio)  # a header walk
        return await self._off_loop(functools.partial(probe_duration, audio))

    def next_window(self, windows: Iterator) -> "asyncio.Future":
        """The stream's next window (None at its end), pulled on a decode thread."""
        return asyncio.get_running_loop().run_in_executor(self._threads, next, windows, None)

    async def _off_loop(self, work: functools.partial) -> object:
        self.in_progress += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._threads, work)
        finally:
            self.in_progress -= 1

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
