"""How a long recording is cut into windows: OpenAI's `chunking_strategy`, as data.

`"auto"` (or nothing) means the daemon's defaults; `{"type": "server_vad", ...}`
sets the voice-activity detector that finds the pauses windows are cut at:

- `threshold`: speech probability (0..1) above which a frame is speech;
- `silence_duration_ms`: how long a pause must be to cut there;
- `prefix_padding_ms`: audio kept before speech that starts a window.

Stdlib only: the shim validates it, the protocol carries it, the daemon's
windower reads it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# OpenAI's defaults for server_vad (Realtime API reference).
DEFAULT_THRESHOLD = 0.5
DEFAULT_PREFIX_PADDING_MS = 300
DEFAULT_SILENCE_DURATION_MS = 200
# Bounds: a pause longer than 10 s would never cut a 30 s window usefully.
MAX_SILENCE_DURATION_MS = 10_000
MAX_PREFIX_PADDING_MS = 5_000


@dataclass(frozen=True)
class Chunking:
    threshold: float = DEFAULT_THRESHOLD
    prefix_padding_ms: int = DEFAULT_PREFIX_PADDING_MS
    silence_duration_ms: int = DEFAULT_SILENCE_DURATION_MS
    # True when the client sent server_vad (not "auto"): its VAD settings were asked for.
    explicit: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(raw: dict[str, Any]) -> "Chunking":
        return Chunking(float(raw["threshold"]), int(raw["prefix_padding_ms"]),
                        int(raw["silence_duration_ms"]), bool(raw.get("explicit", False)))


AUTO = Chunking()
