"""16-bit PCM arithmetic the fronts share (Wyoming, `whisperctl listen`). Stdlib only: fronts
never load numpy, so `array` does it."""

from __future__ import annotations

import sys
from array import array


def average_channels(pcm: bytes, channels: int) -> bytes:
    """Interleaved 16-bit little-endian frames → mono, each frame's samples averaged.

    `pcm` holds whole frames. The mean of int16 values is an int16 again, so it never clips.

    >>> average_channels(array("h", [100, 300, -2, -4]).tobytes(), 2) == array("h", [200, -3]).tobytes()
    True
    """
    if channels == 1:
        return pcm
    samples = array("h", pcm)
    if sys.byteorder == "big":
        samples.byteswap()
    columns = [samples[c::channels] for c in range(channels)]
    mono = array("h", (int(sum(frame) / channels) for frame in zip(*columns)))
    if sys.byteorder == "big":
        mono.byteswap()
    return mono.tobytes()
