"""A no-op engine for benchmarks and tests of the framework itself - never for users.

It answers at once with an empty transcript of the right duration, so a
benchmark through HTTP → shim → socket → daemon measures only the server's
own cost (`bench/overhead.py`). `--engine null` selects it.
"""

from __future__ import annotations

import threading

from whisperd.core.constants import SAMPLE_RATE
from whisperd.core.transcript import Transcript
from whisperd.engines.base import ModelInfo, Options, SegmentCallback


class NullEngine:
    name = "null"
    device = "cpu"
    compute_type = "none"
    concurrency = 1  # answers at once: more slots would only add threads contending for the GIL

    def __init__(self, model: ModelInfo) -> None:
        self.model_info = model
        self._lock = threading.Lock()
        self._answers = 0

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {"null_answers": self._answers}

    def transcribe(self, audio, options: Options, on_segment: SegmentCallback | None = None) -> Transcript:
        with self._lock:
            self._answers += 1
        return Transcript("", options.language or "en", len(audio) / SAMPLE_RATE, (), options.task)
