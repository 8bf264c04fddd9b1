"""A live stream's audio, as it arrives, to 16 kHz float32: the unit every model hears.

16-bit PCM or G.711 (mu-law, A-law) at any rate from 8 to 48 kHz. Another rate is
resampled by FFmpeg's libswresample (through PyAV, which decodes files already),
a real filter with state across chunks, never by dropping samples. A chunk may
end inside a sample: the odd byte waits for the next one.
"""

from __future__ import annotations

import numpy as np

from whisperd.core.constants import SAMPLE_RATE


def _g711_tables() -> tuple[np.ndarray, np.ndarray]:
    """ITU-T G.711 expansion of every byte to a linear 16-bit value (mu-law, A-law)."""
    codes = np.arange(256, dtype=np.int32)
    u = ~codes & 0xFF
    exponent, mantissa = (u >> 4) & 0x07, u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    mulaw = np.where(u & 0x80, -magnitude, magnitude)
    a = codes ^ 0x55
    exponent, mantissa = (a >> 4) & 0x07, a & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    alaw = np.where(a & 0x80, magnitude, -magnitude)
    return mulaw.astype(np.int16), alaw.astype(np.int16)


MULAW, ALAW = _g711_tables()


class PcmConverter:
    """Feed the client's bytes; get 16 kHz mono float32 samples back, as soon as there are any."""

    def __init__(self, encoding: str, rate: int) -> None:
        self.encoding = encoding
        self.rate = rate
        self._carry = b""
        self._resampler = None
        if rate != SAMPLE_RATE:
            import av  # lazy: only a stream at another rate needs it

            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)

    def _linear(self, data: bytes) -> np.ndarray:
        if self.encoding == "s16le":
            data = self._carry + data
            whole = len(data) - len(data) % 2
            self._carry = data[whole:]
            return np.frombuffer(data[:whole], dtype="<i2").astype(np.int16)
        table = MULAW if self.encoding == "mulaw" else ALAW
        return table[np.frombuffer(data, dtype=np.uint8)]

    def feed(self, data: bytes) -> np.ndarray:
        pcm = self._linear(data)
        if self._resampler is None:
            return pcm.astype(np.float32) / 32768.0
        if len(pcm) == 0:
            return np.zeros(0, np.float32)
        return self._resample(pcm)

    def flush(self) -> np.ndarray:
        """What the resampler still holds (its filter's delay) at the end of the audio."""
        if self._resampler is None:
            return np.zeros(0, np.float32)
        return self._resample(None)

    def _resample(self, pcm: np.ndarray | None) -> np.ndarray:
        import av

        frame = None
        if pcm is not None:
            frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = self.rate
        out = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        return np.concatenate(out).astype(np.float32, copy=False) if out else np.zeros(0, np.float32)
