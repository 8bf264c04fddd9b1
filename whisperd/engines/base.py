"""The engine interface: what an engine is given (a model, audio, Options) and returns.

The result type (`Transcript`) lives in `whisperd.core.transcript`, which every
program shares; this module is what the daemon knows of engines.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

from whisperd.core.constants import FALLBACK_TEMPERATURES, NO_SPEECH_THRESHOLD
from whisperd.core.transcript import Segment, Transcript

if TYPE_CHECKING:  # numpy only where audio is
    import numpy as np


@dataclass(frozen=True)
class ModelInfo:
    """An installed model: where its weights are and what it can do."""

    name: str
    kind: str  # "ctranslate2" | "openai-whisper"
    path: Path
    multilingual: bool

    @property
    def english_only(self) -> bool:
        return not self.multilingual


@dataclass(frozen=True)
class Options:
    """What a caller may ask of one transcription."""

    task: str = "transcribe"  # or "translate"
    language: str | None = None  # ISO-639-1; None = detect (multilingual models)
    prompt: str | None = None
    temperature: float = 0.0  # 0 = whisper's fallback sequence
    word_timestamps: bool = False
    beam_size: int = 5
    # Drop segments whisper itself marks as probably silence (no invented words).
    no_speech_threshold: float = NO_SPEECH_THRESHOLD
    vad_filter: bool = False
    # Decode audio under ~20 s on a shorter encoder context (engines/short_path.py).
    short_path: bool = False
    # Fill each segment's `logprobs` (its text tokens' log probabilities); costs a
    # teacher-forced decoder pass per window, so only when asked.
    logprobs: bool = False
    # A live partial: shown for a moment, then replaced by the next. One greedy decode, no
    # temperature fallback, and the short path's answer taken even when it is unsure - a
    # fallback would cost a 30 s decode (a second on 2 cores) for words nobody keeps.
    partial: bool = False

    def temperatures(self) -> tuple[float, ...]:
        if self.partial:
            return (0.0,)
        if self.temperature <= 0.0:
            return FALLBACK_TEMPERATURES
        return (float(self.temperature),)


# Called once per decoded segment, in order, from the inference thread.
SegmentCallback = Callable[[Segment], None]


class Engine(Protocol):
    name: str  # "faster-whisper" | "openai-whisper" | "null"
    device: str
    compute_type: str
    concurrency: int  # requests it may decode at once (the hot worker's slots)

    def transcribe(
        self,
        audio: "np.ndarray",
        options: Options,
        on_segment: SegmentCallback | None = None,
    ) -> Transcript:
        """Transcribe 16 kHz mono float32 audio. Blocking; call it off the event loop."""
        ...

    def counters(self) -> dict[str, int]:
        """Flat counts since the engine was built, each only ever growing
        (`common.COUNTER_NAMES` for the two Whisper engines)."""
        ...
