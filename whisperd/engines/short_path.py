"""The short-audio path: decode a voice command without 30 s of padding.

Whisper pads every input to 30 s (3000 mel frames, 1500 encoder positions), so
a 2 s command pays for 28 s of silence in the encoder and in every decoder
cross-attention step. Both engines accept a shorter encoder context
(CTranslate2 as it is; openai-whisper with its positional embedding sliced),
and a 3 s command then takes a fraction of the time.

The catch, measured on tiny.en and base: with too little silence after the
speech the decoder may loop ("please, please, please…") until its token limit,
so the context has a floor (`MIN_FRAMES`, 375 encoder positions = 7.5 s) and
some room after the speech, and every short decode passes a guard
(`fallback_reason`): a token cap of about 10 + 8 tokens per second, a repeated
n-gram, whisper's compression-ratio and log-probability thresholds. When the
guard trips, the engine decodes again on the ordinary 30 s path, so the short
path can cost time but never words the 30 s path would have got right.

Pure functions, no model: the engines decode, and `common.py` applies these
around their decoders.
"""

from __future__ import annotations

import math
import zlib
from typing import Sequence

from whisperd.core.constants import (
    COMPRESSION_RATIO_THRESHOLD,
    HOP_LENGTH,
    LOGPROB_THRESHOLD,
    N_FRAMES,
    SAMPLE_RATE,
)

# Audio longer than this always takes the 30 s path (several segments are
# likely, and the context would be most of a window anyway).
MAX_SECONDS = 20.0
# 375 encoder positions (7.5 s): below this the decoder loops far more often.
MIN_FRAMES = 750
# Silence kept after the speech, at least this many frames or half the speech.
TAIL_FRAMES = 250
# Contexts are rounded up to this many frames (0.5 s) so a few shapes recur.
ROUND_FRAMES = 50
# Token cap: a fast speaker says ~3 words (~4-5 tokens) a second; 8 is generous.
CAP_BASE_TOKENS = 10
CAP_TOKENS_PER_SECOND = 8.0
# An n-gram said this many times in a row is a decoder loop, not a command.
REPEATS = 3
MAX_NGRAM = 8
# A phrase this many tokens long said twice in one command is the decoder repeating itself.
PHRASE_TOKENS = 5
# A language detected on a short context with less confidence than this is left
# to the 30 s path, which hears a whole window.
LANGUAGE_SURE = 0.5

# Every answer `fallback_reason` can give, in the order it checks them.
FALLBACK_REASONS = ("maybe no speech", "token cap", "repetition", "repeated phrase",
                    "compression ratio", "log probability", "empty")
# Why an engine may not even try the short decode.
DECLINE_REASONS = ("language unsure", "prompt too long")


def context_frames(n_samples: int, *, max_seconds: float = MAX_SECONDS) -> int | None:
    """Mel frames for the encoder (even, ≥ MIN_FRAMES), or None: use the 30 s path.

    >>> context_frames(3 * 16000)     # 300 frames of speech: the floor
    750
    >>> context_frames(8 * 16000)     # 800 + 400 of room
    1200
    >>> context_frames(20 * 16000) is None  # would be a whole window anyway
    True
    """
    if n_samples <= 0 or n_samples > max_seconds * SAMPLE_RATE:
        return None
    content = math.ceil(n_samples / HOP_LENGTH)
    frames = max(MIN_FRAMES, content + max(TAIL_FRAMES, content // 2))
    frames = math.ceil(frames / ROUND_FRAMES) * ROUND_FRAMES
    frames += frames % 2  # conv2 has stride 2: one encoder position per two frames
    if frames >= N_FRAMES:
        return None  # no saving left
    return frames


def token_cap(seconds: float) -> int:
    """Most tokens a command of this length can honestly need.

    >>> token_cap(2.0)
    26
    """
    return int(CAP_BASE_TOKENS + math.ceil(CAP_TOKENS_PER_SECOND * max(seconds, 0.0)))


def compression_ratio(text: str) -> float:
    """whisper's measure of repetitiveness: raw bytes ÷ zlib-compressed bytes."""
    data = text.encode("utf-8")
    if not data:
        return 0.0
    return len(data) / len(zlib.compress(data))


def repeated_ngram(tokens: Sequence[int], repeats: int = REPEATS, max_n: int = MAX_NGRAM) -> tuple[int, ...] | None:
    """The first n-gram said `repeats` times in a row, or None.

    >>> repeated_ngram([5, 1, 2, 1, 2, 1, 2, 9])
    (1, 2)
    >>> repeated_ngram([1, 2, 1, 3, 1, 4]) is None  # repeated, but not in a row
    True
    """
    toks = list(tokens)
    for n in range(1, max_n + 1):
        span = n * repeats
        for i in range(len(toks) - span + 1):
            gram = toks[i : i + n]
            if all(toks[i + k * n : i + (k + 1) * n] == gram for k in range(1, repeats)):
                return tuple(gram)
    return None


def repeated_phrase(tokens: Sequence[int], n: int = PHRASE_TOKENS) -> tuple[int, ...] | None:
    """The first `n`-token phrase said twice (not overlapping), or None.

    On real recordings the short path's typical failure is the whole utterance
    said again ("That is to say much of political philosophy. That is to say
    much of political philosophy."), with or without its last punctuation,
    which an n-gram repeated in a row does not catch.

    >>> repeated_phrase([1, 2, 3, 4, 5, 9, 1, 2, 3, 4, 5])
    (1, 2, 3, 4, 5)
    >>> repeated_phrase([1, 2, 3, 4, 5, 1, 2, 3, 4, 6]) is None
    True
    """
    first: dict[tuple[int, ...], int] = {}
    for i in range(len(tokens) - n + 1):
        gram = tuple(tokens[i : i + n])
        if gram in first and i - first[gram] >= n:
            return gram
        first.setdefault(gram, i)
    return None


def fallback_reason(tokens: Sequence[int], text: str, avg_logprob: float, cap: int,
                    no_speech_prob: float = 0.0, no_speech_threshold: float = 1.0) -> str | None:
    """Why a short decode must not be trusted (then: decode on the 30 s path), or None.

    A decode the model itself thinks may be no speech goes to the 30 s path too:
    on near-silent real recordings the short context invents "Thank you." where
    the full window (and the silence policy after it) gives nothing.
    """
    if no_speech_prob > no_speech_threshold:
        return "maybe no speech"
    if len(tokens) >= cap:
        return "token cap"
    if repeated_ngram(tokens) is not None:
        return "repetition"
    if repeated_phrase(tokens) is not None:
        return "repeated phrase"
    if compression_ratio(text) > COMPRESSION_RATIO_THRESHOLD:
        return "compression ratio"
    if avg_logprob < LOGPROB_THRESHOLD:
        return "log probability"
    if not text.strip():
        return "empty"  # silence or noise: let the 30 s path and the silence policy judge
    return None


def reason_slug(reason: str) -> str:
    """A reason as a counter name's tail.

    >>> reason_slug("repeated phrase")
    'repeated_phrase'
    """
    return reason.replace(" ", "_")


def usable(*, enabled: bool, word_timestamps: bool, temperature: float, n_samples: int) -> int | None:
    """Mel frames for the short path when this request may take it, else None.

    Word timestamps take the 30 s path: their alignment uses the cross-attention
    over a full window, and a command rarely asks for them. An explicit sampling
    temperature (> 0) does too: the short path decodes greedily or with beams only.
    """
    if not enabled or word_timestamps or temperature > 0.0:
        return None
    return context_frames(n_samples)
