"""Where a live speaker starts and stops: speech probabilities per frame in, turns out. Pure.

Silero's rule, as faster-whisper and OpenAI's server VAD use it: a frame is speech
at `threshold` or above; speech starts after `MIN_SPEECH_FRAMES` such frames in a
row (a click is not a turn) and stops once the probability has stayed below
`threshold - 0.15` for `silence_duration_ms`. The hysteresis keeps a soft syllable
from ending a turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from whisperd.core.chunking import Chunking

FRAME = 512  # samples per detector frame at 16 kHz (32 ms): Silero's unit
FRAME_MS = FRAME * 1000 // 16_000
MIN_SPEECH_FRAMES = 3  # ~100 ms


@dataclass
class TurnDetector:
    """Feed frame probabilities in stream order; get ("start", frame) and ("stop", frame)
    events: the first speech frame of a turn, and the first quiet frame after it."""

    threshold: float = 0.5
    silence_frames: int = 16

    frame: int = 0  # frames seen so far
    in_speech: bool = False
    _run: int = 0  # speech frames in a row (before a start) or quiet ones (during a turn)
    _last_speech: int = 0

    @staticmethod
    def for_vad(vad: Chunking) -> "TurnDetector":
        return TurnDetector(vad.threshold, max(1, -(-vad.silence_duration_ms // FRAME_MS)))

    @property
    def quiet_threshold(self) -> float:
        return max(0.01, self.threshold - 0.15)

    def feed(self, probabilities: Iterable[float]) -> list[tuple[str, int]]:
        """
        >>> t = TurnDetector(0.5, silence_frames=3)
        >>> t.feed([0.1, 0.9, 0.9, 0.9, 0.9, 0.2, 0.1, 0.1, 0.1])
        [('start', 1), ('stop', 5)]
        >>> t.feed([0.9, 0.1, 0.9, 0.1])  # too short to start a turn
        []
        """
        events: list[tuple[str, int]] = []
        for p in probabilities:
            if not self.in_speech:
                self._run = self._run + 1 if p >= self.threshold else 0
                if self._run >= MIN_SPEECH_FRAMES:
                    self.in_speech, self._run = True, 0
                    self._last_speech = self.frame
                    events.append(("start", self.frame - MIN_SPEECH_FRAMES + 1))
            elif p >= self.quiet_threshold:
                self._run = 0
                self._last_speech = self.frame
            else:
                self._run += 1
                if self._run >= self.silence_frames:
                    self.in_speech, self._run = False, 0
                    events.append(("stop", self._last_speech + 1))
            self.frame += 1
        return events

    def reset(self) -> None:
        self.in_speech, self._run = False, 0
