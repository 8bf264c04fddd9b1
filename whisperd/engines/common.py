"""What both Whisper engines do around their model, written once.

An engine brings two decoders; `transcribe` does the rest the same way for both
and counts what happened:

    digital silence ───────────────────────────────► empty transcript (no model)
    short path usable? ─► decode_short ─► guard ───► one segment (none if silence)
                               │ declined   │ distrusted
                               ▼            ▼
    decode_full (the 30 s path) ─► segments minus silence, renumbered, clamped

The rules themselves are pure and live in `short_path.py` and `silence.py`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from whisperd.core.constants import SAMPLE_RATE
from whisperd.core.transcript import Segment, TokenLogprob, Transcript, join_segment_text
from whisperd.engines import short_path
from whisperd.engines.base import Options, SegmentCallback
from whisperd.engines.silence import is_digital_silence, is_silence_segment

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

FALLBACK_PREFIX = "short_path_fallback_"
COUNTER_NAMES: tuple[str, ...] = (
    "short_path_answers",  # answered on the short path
    *(FALLBACK_PREFIX + short_path.reason_slug(r) for r in (*short_path.FALLBACK_REASONS,
                                                            *short_path.DECLINE_REASONS)),
    "digital_silence",  # answered without running the model
    "full_path_decodes",  # the 30 s path ran (first choice or after a fallback)
    "temperature_fallbacks",  # a 30 s window's greedy decode failed Whisper's test (engines/fallback.py)
    "fallback_decodes",  # decodes at a temperature above 0 that followed
    "repetition_confirmed",  # a repetitive window whose words a second decode confirmed
    "partial_unsure_answers",  # a live partial's short-path answer kept though unsure (Options.partial)
)


@dataclass(frozen=True)
class ShortDecode:
    """One decode on a short context, as the guard needs to see it."""

    tokens: Sequence[int]  # text tokens only: no special or timestamp tokens
    text: str  # as the tokenizer decodes them, leading space kept
    avg_logprob: float
    no_speech_prob: float
    language: str
    # The tokens' log probabilities, when Options.logprobs asked for them.
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class FullDecode:
    """The 30 s path under way: its language, and its segments as they are decoded."""

    language: str
    # In order; ids, the silence filter and clamping to the audio are done here.
    segments: Iterator[Segment]


# (audio, options, frames, token cap) -> the decode, or why the engine did not try
ShortDecoder = Callable[["np.ndarray", Options, int, int], "ShortDecode | str"]
FullDecoder = Callable[["np.ndarray", Options], FullDecode]


class EngineCounters:
    """Counts since the engine was built; several hot slots add to them at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(COUNTER_NAMES, 0)

    def add(self, name: str) -> None:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


def transcribe(
    audio: "np.ndarray",
    options: Options,
    on_segment: SegmentCallback | None,
    *,
    decode_short: ShortDecoder | None,
    decode_full: FullDecoder,
    counters: EngineCounters,
) -> Transcript:
    """The whole request; `decode_short=None` when this engine cannot take the short path now."""
    duration = len(audio) / SAMPLE_RATE
    if is_digital_silence(audio):
        counters.add("digital_silence")
        return Transcript("", options.language or "en", duration, (), options.task)
    frames = None
    if decode_short is not None:
        frames = short_path.usable(enabled=options.short_path, word_timestamps=options.word_timestamps,
                                   temperature=options.temperature, n_samples=len(audio))
    if frames is not None:
        short = _short(audio, options, frames, decode_short, counters)
        if short is not None:
            if on_segment is not None:
                for seg in short.segments:
                    on_segment(seg)
            return short
    counters.add("full_path_decodes")
    return _full(audio, options, on_segment, decode_full(audio, options))


def _short(
    audio: "np.ndarray", options: Options, frames: int, decode_short: ShortDecoder, counters: EngineCounters
) -> Transcript | None:
    """The short path's answer, or None (counted by reason): take the 30 s path."""
    duration = len(audio) / SAMPLE_RATE
    cap = short_path.token_cap(duration)
    got = decode_short(audio, options, frames, cap)
    if isinstance(got, str):
        log.debug("short path declined (%s); 30 s path", got)
        counters.add(FALLBACK_PREFIX + short_path.reason_slug(got))
        return None
    # whisper's (and faster-whisper's) text measures strip the leading space
    text = got.text.strip()
    reason = short_path.fallback_reason(got.tokens, text, got.avg_logprob, cap,
                                        got.no_speech_prob, options.no_speech_threshold)
    if reason is not None and options.partial:
        counters.add("partial_unsure_answers")  # kept: the next partial or the final corrects it
    elif reason is not None:
        log.debug("short path distrusted (%s): %r; 30 s path", reason, text)
        counters.add(FALLBACK_PREFIX + short_path.reason_slug(reason))
        return None
    counters.add("short_path_answers")
    segment = Segment(
        id=0, seek=0, start=0.0, end=duration, text=got.text, tokens=tuple(int(t) for t in got.tokens),
        temperature=0.0, avg_logprob=float(got.avg_logprob),
        compression_ratio=short_path.compression_ratio(text), no_speech_prob=float(got.no_speech_prob),
        logprobs=got.logprobs,
    )  # fmt: skip
    segments: tuple[Segment, ...] = (segment,)
    if is_silence_segment(segment.text, segment.no_speech_prob, segment.avg_logprob, options.no_speech_threshold):
        segments = ()
    return Transcript(join_segment_text(segments), got.language, duration, segments, options.task)


def _full(audio: "np.ndarray", options: Options, on_segment: SegmentCallback | None, run: FullDecode) -> Transcript:
    duration = len(audio) / SAMPLE_RATE
    kept: list[Segment] = []
    # The segments are decoded lazily: each window's reach `on_segment` as it is done.
    for seg in run.segments:
        if is_silence_segment(seg.text, seg.no_speech_prob, seg.avg_logprob, options.no_speech_threshold):
            continue
        # The last window's end can pass the audio's: clamp it.
        seg = dataclasses.replace(seg, id=len(kept), start=min(seg.start, duration), end=min(seg.end, duration))
        kept.append(seg)
        if on_segment is not None:
            on_segment(seg)
    return Transcript(join_segment_text(kept), run.language, duration, tuple(kept), options.task)
