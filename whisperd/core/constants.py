"""Whisper's fixed numbers, in one place for the daemon and both engines."""

from __future__ import annotations

SAMPLE_RATE = 16_000  # every model hears 16 kHz mono
HOP_LENGTH = 160  # samples per mel frame (10 ms)
N_FRAMES = 3000  # whisper's 30 s window in mel frames

# OpenAI's `temperature=0` means "start greedy, fall back to hotter sampling when
# the output looks wrong" - whisper's own default sequence.
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
# whisper's own thresholds for "this decode looks wrong" (and faster-whisper's).
COMPRESSION_RATIO_THRESHOLD = 2.4
LOGPROB_THRESHOLD = -1.0
# whisper's default: a window above this no-speech probability may be silence.
NO_SPEECH_THRESHOLD = 0.6
