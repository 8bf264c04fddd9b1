"""Encoded audio → 16 kHz mono float32 samples, for the pool, off the event loop.

Decoding a compressed file takes milliseconds to seconds of CPU, so it runs on
a small thread pool of its own; a plain 16 kHz WAV of a few seconds only needs
its samples converted and is decoded in place. `in_progress` counts the decodes
under way: they are queued work the scheduler cannot see yet.
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# A plain 16 kHz mono PCM WAV up to this size (8 s) is decoded on the event loop:
# its samples only need converting (~0.1 ms), and a thread hand-off costs more.
INLINE_DECODE_BYTES = 256 * 1024


class Decoder:
    def __init__(self, max_audio_s: float, threads: int = 2) -> None:
        self.max_audio_s = max_audio_s
        self.in_progress = 0
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix="decode")

    async def decode(self, audio: bytes) -> np.ndarray:
        # Lazy: PyAV loads FFmpeg's libraries, which tests of the pool do not need.
        from whisperd.daemon.audio import decode_audio, is_plain_wav

        decode = functools.partial(decode_audio, audio, max_duration_s=self.max_audio_s)
        if len(audio) <= INLINE_DECODE_BYTES and is_plain_wav(audio):
            return decode()  # microseconds: cheaper than a hand-off to a decode thread
        self.in_progress += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._threads, decode)
        finally:
            self.in_progress -= 1

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
