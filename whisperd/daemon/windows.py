"""A stream of 16 kHz samples → windows of at most 30 s, cut at pauses.

A long recording is never one array: `Windower` takes the decoder's chunks
(`audio.stream_audio`) and holds at most one window's worth of them. When it has
`max_seconds`, it looks for the longest pause in the last two thirds of it, cuts
there and keeps the rest for the next window, so a cut falls between sentences
where it can, and between words always.

Pauses come from a `SpeechDetector`: Silero VAD (faster-whisper ships the ONNX
model; onnxruntime runs it, one thread, ~35 ms for 30 s) or, where it cannot
be loaded, frame energy. `Chunking` (OpenAI's `chunking_strategy`) sets its
threshold, the shortest pause to cut at and the audio kept before the next
speech. A window with no speech in it (digital silence, a tone, room noise) is
skipped: it would cost a decode and could only invent words.

`choose_cut` is the policy, pure; the rest only moves samples.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Iterable, Iterator, Protocol

import numpy as np

from whisperd.core.chunking import AUTO, Chunking
from whisperd.core.constants import SAMPLE_RATE

log = logging.getLogger("whisperd.windows")

FRAME = 512  # samples per detector frame (32 ms): Silero's unit
MAX_WINDOW_SECONDS = 30.0  # Whisper's context
# No cut before this fraction of a full window: windows stay long, so there are few edges.
EARLIEST_CUT = 1 / 3
# A plain-silence check before any detector: peaks below this are no sound at all.
SILENCE_PEAK = 1e-4


@dataclass(frozen=True)
class Window:
    index: int  # 0, 1, ... in recording order (skipped windows take no index)
    start: int  # its first sample's offset in the recording
    pcm: np.ndarray

    @property
    def start_s(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def seconds(self) -> float:
        return len(self.pcm) / SAMPLE_RATE


class SpeechDetector(Protocol):
    name: str

    def probabilities(self, pcm: np.ndarray) -> np.ndarray:
        """Speech probability (0..1) per FRAME of `pcm` (a last partial frame included)."""
        ...


class SileroDetector:
    """faster-whisper's bundled Silero VAD model, loaded once, shared by every thread."""

    name = "silero"

    def __init__(self) -> None:
        from whisperd.core.startup import quiet_libraries

        quiet_libraries()  # onnxruntime's telemetry off, whoever loads this (the bench, a test)
        from faster_whisper.vad import get_vad_model  # lazy: onnxruntime and the model

        self._model = get_vad_model()

    def probabilities(self, pcm: np.ndarray) -> np.ndarray:
        # A copy, always: faster-whisper's model writes zeros into its input's last frame.
        padded = _pad_to_frames(pcm, copy=True)
        if len(padded) == 0:
            return np.zeros(0, np.float32)
        return np.asarray(self._model(padded), dtype=np.float32).reshape(-1)


class EnergyDetector:
    """Where Silero cannot run: a frame is speech when it is within 30 dB of the window's
    loud frames and above -60 dBFS. Coarse (it hears a tone as speech), but it finds pauses."""

    name = "energy"

    def probabilities(self, pcm: np.ndarray) -> np.ndarray:
        frames = _pad_to_frames(pcm).reshape(-1, FRAME)
        if len(frames) == 0:
            return np.zeros(0, np.float32)
        rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
        floor = max(1e-3, float(np.percentile(rms, 95)) * 10 ** (-30 / 20))
        return (rms > floor).astype(np.float32)


_detector: SpeechDetector | None = None
_detector_lock = threading.Lock()


def default_detector(kind: str = "auto") -> SpeechDetector:
    """Silero when it loads ("auto" falls back to energy, with a warning once), or energy."""
    global _detector
    with _detector_lock:
        if _detector is None or (kind != "auto" and _detector.name != kind):
            if kind == "energy":
                _detector = EnergyDetector()
            else:
                try:
                    _detector = SileroDetector()
                except Exception as exc:  # onnxruntime missing or the model unreadable
                    if kind == "silero":
                        raise
                    log.warning("Silero VAD unavailable (%s): windows are cut at pauses found by energy", exc)
                    _detector = EnergyDetector()
        return _detector


def _pad_to_frames(pcm: np.ndarray, *, copy: bool = False) -> np.ndarray:
    extra = (-len(pcm)) % FRAME
    if extra == 0:
        return np.array(pcm, dtype=np.float32, copy=True) if copy else np.ascontiguousarray(pcm, dtype=np.float32)
    return np.concatenate([pcm.astype(np.float32, copy=False), np.zeros(extra, np.float32)])


def choose_cut(prob: np.ndarray, *, threshold: float, lo: int, hi: int, min_pause: int, padding: int) -> int:
    """The frame to cut at, in [lo, hi]: where a pause is, so no word is split.

    The longest pause of at least `min_pause` frames (its part inside [lo, hi]; the
    later of equals) wins, cut in its middle or `padding` frames before the speech
    after it, whichever is earlier, but not before the pause began; else the middle of the longest pause of any length; else
    the least speech-like frame (the latest of equals, so a window without pauses is a
    full one). The longest pause is the likeliest end of a sentence: measured on real
    speech, cutting there instead of at the last pause of 200 ms cost no words at the
    edges (docs/windows.md).

    >>> p = np.array([.9] * 10 + [.1] * 4 + [.9] * 10 + [.1] * 2 + [.9] * 4)
    >>> choose_cut(p, threshold=.5, lo=5, hi=29, min_pause=2, padding=1)  # the 4-frame pause
    12
    >>> choose_cut(p, threshold=.5, lo=15, hi=29, min_pause=3, padding=1)  # only a short one left
    25
    >>> choose_cut(np.array([.9, .8, .6, .9]), threshold=.5, lo=1, hi=3, min_pause=1, padding=0)
    2
    """
    lo, hi = max(0, lo), min(hi, len(prob) - 1)
    quiet = prob[: hi + 1] < threshold
    runs: list[tuple[int, int]] = []  # (start, end exclusive) of each pause reaching past lo
    start = None
    for i, q in enumerate(quiet):
        if q and start is None:
            start = i
        elif not q and start is not None:
            if i > lo:
                runs.append((start, i))
            start = None
    if start is not None and hi + 1 > lo:
        runs.append((start, hi + 1))

    def inside(run: tuple[int, int]) -> tuple[int, int]:
        return min(run[1], hi + 1) - max(run[0], lo), run[0]

    long_enough = [r for r in runs if r[1] - r[0] >= min_pause]
    if long_enough:
        begin, end = max(long_enough, key=inside)
        # Its middle, or `padding` before the speech if that is earlier: a detector is slow to
        # hear a soft onset ("ask"), so a cut close to where it says speech resumes can clip it.
        return int(min(hi, max(lo, begin, min((begin + end) // 2, end - padding))))
    if runs:
        begin, end = max(runs, key=inside)
        return int(min(hi, max(lo, (begin + end) // 2)))
    return int(hi - np.argmin(prob[lo : hi + 1][::-1]))


class Windower:
    """Cuts a stream of sample chunks into `Window`s; `total_samples` counts what went in."""

    def __init__(self, detector: SpeechDetector, chunking: Chunking | None = None, *,
                 max_seconds: float = MAX_WINDOW_SECONDS) -> None:
        self.detector = detector
        self.chunking = chunking or AUTO
        self.max_samples = int(max_seconds * SAMPLE_RATE) // FRAME * FRAME
        self.total_samples = 0
        self.skipped = 0  # windows without speech, never sent to a model
        self._index = 0

    def windows(self, chunks: Iterable[np.ndarray]) -> Iterator[Window]:
        held: list[np.ndarray] = []
        held_n = 0
        offset = 0  # recording offset of held[0][0]
        for chunk in chunks:
            held.append(chunk)
            held_n += len(chunk)
            self.total_samples += len(chunk)
            if held_n < self.max_samples:
                continue
            buf = np.concatenate(held)
            while len(buf) >= self.max_samples:
                head = buf[: self.max_samples]
                cut, prob = self._cut(head)
                window = self._window(head[:cut], offset, prob[: -(-cut // FRAME)])
                if window is not None:
                    yield window
                offset += cut
                buf = buf[cut:]
            held, held_n = ([buf.copy()] if len(buf) else []), len(buf)  # not a view into the old buffer
        if held_n:
            rest = np.concatenate(held)
            window = self._window(rest, offset, self._probabilities(rest))
            if window is not None:
                yield window

    def _probabilities(self, pcm: np.ndarray) -> np.ndarray:
        if len(pcm) == 0 or float(np.max(np.abs(pcm))) < SILENCE_PEAK:
            return np.zeros(-(-len(pcm) // FRAME), np.float32)  # no sound: no detector needed
        return self.detector.probabilities(pcm)

    def _cut(self, head: np.ndarray) -> tuple[int, np.ndarray]:
        """Where to cut a full window's worth of samples, and the speech probabilities of it."""
        prob = self._probabilities(head)
        c = self.chunking
        frame_ms = FRAME * 1000 / SAMPLE_RATE
        frame = choose_cut(
            prob, threshold=c.threshold, lo=int(len(prob) * EARLIEST_CUT), hi=len(prob) - 1,
            min_pause=max(1, round(c.silence_duration_ms / frame_ms)),
            padding=round(c.prefix_padding_ms / frame_ms),
        )
        return max(FRAME, frame * FRAME), prob

    def _window(self, pcm: np.ndarray, start: int, prob: np.ndarray) -> Window | None:
        if len(pcm) == 0 or not np.any(prob >= self.chunking.threshold):
            self.skipped += 1  # no speech: nothing to decode
            return None
        window = Window(self._index, start, pcm)
        self._index += 1
        return window
