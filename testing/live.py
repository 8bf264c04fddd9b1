"""Live speech for tests and the bench: recordings as raw PCM, paced the way a microphone sends it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

CHUNK_SAMPLES = 1024  # what Home Assistant sends per audio-chunk at 16 kHz


def pcm16(source: Path | bytes, rate: int = 16_000) -> bytes:
    """Any audio file as 16-bit mono PCM at `rate` (decoded and resampled by FFmpeg)."""
    import av
    import io

    data = source.read_bytes() if isinstance(source, Path) else source
    out = []
    with av.open(io.BytesIO(data)) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        for frame in container.decode(audio=0):
            out.extend(f.to_ndarray().tobytes() for f in resampler.resample(frame))
        out.extend(f.to_ndarray().tobytes() for f in resampler.resample(None))
    return b"".join(out)


def spoken(text: str, rate: int = 16_000) -> bytes:
    """`text` said by espeak-ng, as 16-bit mono PCM at `rate`."""
    from testing.speech import espeak_wav

    return pcm16(espeak_wav(text), rate)


def silence(seconds: float, rate: int = 16_000) -> bytes:
    return bytes(int(seconds * rate) * 2)


async def paced(pcm: bytes, send: Callable[[bytes], Awaitable[Any]], *, rate: int = 16_000,
                chunk: int = CHUNK_SAMPLES, speed: float = 1.0) -> float:
    """Send `pcm` in chunks no faster than real time × `speed`; the time the last chunk went."""
    step = chunk * 2
    start = time.monotonic()
    for i in range(0, len(pcm), step):
        due = start + (i // 2) / rate / speed
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await send(pcm[i:i + step])
    return time.monotonic()
