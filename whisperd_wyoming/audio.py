"""The audio a Wyoming client sends, made into what the daemon's live stream takes.

The daemon takes 16-bit little-endian mono PCM at 8-48 kHz and resamples it
itself (libswresample), so here only the channels are mixed down: a frame's
samples are averaged (`whisperd.client.pcm`). Other sample widths are refused rather
than guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass

from whisperd.client.pcm import average_channels
from whisperd.core.errors import InvalidParameter

WIDTH = 2  # bytes per sample: the one width taken
MAX_CHANNELS = 8


class UnsupportedAudio(InvalidParameter):
    code = "unsupported_audio"


@dataclass(frozen=True)
class AudioFormat:
    rate: int
    width: int
    channels: int

    @property
    def frame_bytes(self) -> int:
        return self.width * self.channels

    def describe(self) -> str:
        return f"{self.rate} Hz, {8 * self.width}-bit, {self.channels} channel(s)"


def audio_format(rate: object, width: object, channels: object) -> AudioFormat:
    """The format an audio-start or audio-chunk names, checked; UnsupportedAudio if we cannot take it.

    The rate is the daemon's to judge (it says which rates it takes).
    """
    for name, value in (("rate", rate), ("width", width), ("channels", channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise UnsupportedAudio(f"audio {name} must be a positive integer, got {value!r:.20}", param=name)
    assert isinstance(rate, int) and isinstance(width, int) and isinstance(channels, int)
    if width != WIDTH:
        raise UnsupportedAudio(f"only 16-bit audio (width 2) is taken, got width {width}", param="width")
    if channels > MAX_CHANNELS:
        raise UnsupportedAudio(f"at most {MAX_CHANNELS} channels are taken, got {channels}", param="channels")
    return AudioFormat(rate, width, channels)


class MonoMixer:
    """Chunks of any size in, whole mono frames out (a frame split across chunks waits for its rest)."""

    def __init__(self, channels: int) -> None:
        self.channels = channels
        self.frame_bytes = WIDTH * channels
        self._rest = b""

    def feed(self, pcm: bytes) -> bytes:
        if self.channels == 1:
            return pcm  # the daemon keeps an odd byte for the next chunk itself
        data = self._rest + pcm
        whole = len(data) - len(data) % self.frame_bytes
        self._rest = data[whole:]
        return average_channels(data[:whole], self.channels)
