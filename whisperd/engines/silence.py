"""Keep silence silent: no "You" or "Thank you for watching" invented from nothing.

Whisper drops a window as silence only when its no-speech probability is high
*and* the decoded text is unconfident (avg log-probability below -1.0). Small
models decode silence quite confidently ("You", avg_logprob ≈ -0.94 on 5 s of
zeros with tiny.en), so that rule lets them through. Measured on tiny.en
(faster-whisper int8): silence, mains hum and white noise give no_speech_prob
0.92-0.95 with avg_logprob -0.76..-0.98, while real speech in a short trailing
window gave no_speech_prob 0.79 with avg_logprob -0.42 - so no_speech_prob
alone is not enough, and a tighter log-probability bound (-0.85, between
silence's -0.94 and the -0.72 of accented Spanish on `base`) separates them.
Pure functions; the engines apply them per segment.
"""

from __future__ import annotations

import re

import numpy as np

# Below this peak level (about -60 dBFS) the input is digital silence: skip the model.
SILENT_PEAK = 1e-3
# A segment flagged as no-speech is dropped unless it is at least this confident.
SILENCE_LOGPROB = -0.85
_WORDLIKE = re.compile(r"\w")


def is_digital_silence(audio: np.ndarray) -> bool:
    return audio.size == 0 or float(np.max(np.abs(audio))) < SILENT_PEAK


def is_silence_segment(text: str, no_speech_prob: float, avg_logprob: float, threshold: float) -> bool:
    """True when a decoded segment is most likely invented from silence or noise."""
    if not _WORDLIKE.search(text):
        return True  # only punctuation (" ." from noise) or nothing
    return no_speech_prob > threshold and avg_logprob < SILENCE_LOGPROB
