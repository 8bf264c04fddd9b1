"""How a long recording is cut into windows: OpenAI's `chunking_strategy`, as data.

`"auto"` (or nothing) means the daemon's defaults; `{"type": "server_vad", ...}`
sets the voice-activity detector that finds the pauses windows are cut at:

- `threshold`: speech probability (0..1) above which a frame is speech;
- `silence_duration_ms`: how long a pause must be to cut there;
- `prefix_padding_ms`: audio kept before speech that starts a window.

Two shapes, one meaning:

    OpenAI's (the shim reads it)    "auto" | {"type": "server_vad", "threshold": 0.5,
                                              "prefix_padding_ms": 300, "silence_duration_ms": 200}
    the socket's (`to_json`)        {"threshold": 0.5, "prefix_padding_ms": 300,
                                     "silence_duration_ms": 200, "explicit": true}

Both are checked here, key by key and against the bounds below, so the shim
and the protocol refuse the same values (`InvalidParameter` naming the
parameter their caller speaks of). Stdlib only: the shim validates it, the
protocol carries it, the daemon's windower reads it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from whisperd.core.errors import InvalidParameter

# OpenAI's defaults for server_vad (Realtime API reference).
DEFAULT_THRESHOLD = 0.5
DEFAULT_PREFIX_PADDING_MS = 300
DEFAULT_SILENCE_DURATION_MS = 200
# Bounds: a pause longer than 10 s would never cut a 30 s window usefully.
MAX_SILENCE_DURATION_MS = 10_000
MAX_PREFIX_PADDING_MS = 5_000

SERVER_VAD = "server_vad"
# OpenAI's keys of a server_vad object, each with how it is checked.
VAD_KEYS = ("type", "prefix_padding_ms", "silence_duration_ms", "threshold")


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
        """The socket's shape, trusted (use `from_wire` for what a client sent)."""
        return Chunking(float(raw["threshold"]), int(raw["prefix_padding_ms"]),
                        int(raw["silence_duration_ms"]), bool(raw.get("explicit", False)))


AUTO = Chunking()


def _number(raw: Mapping[str, Any], key: str, param: str) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    # bool is an int in Python; never accept it where a number is meant.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidParameter(f"{param}.{key} must be a number, got {value!r:.40}", param=param)
    return float(value)


def _integer(raw: Mapping[str, Any], key: str, param: str, upper: int) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter(f"{param}.{key} must be an integer number of milliseconds, got {value!r:.40}",
                               param=param)
    if not 0 <= value <= upper:
        raise InvalidParameter(f"{param}.{key} must be between 0 and {upper} ms, got {value}", param=param)
    return value


def _checked(raw: Mapping[str, Any], *, param: str, explicit: bool) -> Chunking:
    """The three VAD settings of `raw` (missing ones: OpenAI's defaults), bounds-checked."""
    threshold = _number(raw, "threshold", param)
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise InvalidParameter(f"{param}.threshold must be between 0 and 1, got {threshold:g}", param=param)
    prefix = _integer(raw, "prefix_padding_ms", param, MAX_PREFIX_PADDING_MS)
    silence = _integer(raw, "silence_duration_ms", param, MAX_SILENCE_DURATION_MS)
    return Chunking(
        DEFAULT_THRESHOLD if threshold is None else threshold,
        DEFAULT_PREFIX_PADDING_MS if prefix is None else prefix,
        DEFAULT_SILENCE_DURATION_MS if silence is None else silence,
        explicit,
    )


def _unknown(raw: Mapping[str, Any], known: tuple[str, ...], param: str) -> None:
    unknown = sorted(str(k) for k in raw if k not in known)
    if unknown:
        raise InvalidParameter(f"{param} has unknown key(s) {', '.join(unknown)[:120]}; "
                               f"it takes {', '.join(known)}", param=param)


def from_openai(value: Any, *, param: str = "chunking_strategy") -> Chunking:
    """OpenAI's `chunking_strategy`: "auto", a server_vad object, or that object as JSON text.

    >>> from_openai("auto") == AUTO
    True
    >>> from_openai('{"type": "server_vad", "threshold": 0.7}').threshold
    0.7
    >>> from_openai({"type": "server_vad", "silence_duration_ms": 20000})
    Traceback (most recent call last):
    ...
    whisperd.core.errors.InvalidParameter: chunking_strategy.silence_duration_ms must be between 0 and 10000 ms, got 20000
    """
    if isinstance(value, str):
        text = value.strip()
        if text == "auto":
            return AUTO
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError:
                raise InvalidParameter(f"{param} is not valid JSON", param=param) from None
    if not isinstance(value, Mapping):
        raise InvalidParameter(f"{param} must be 'auto' or an object "
                               f'{{"type": "server_vad", ...}}, got {value!r:.40}', param=param)
    _unknown(value, VAD_KEYS, param)
    if value.get("type") != SERVER_VAD:
        raise InvalidParameter(f"{param}.type must be 'server_vad', got {value.get('type')!r:.40}", param=param)
    return _checked(value, param=param, explicit=True)


def from_wire(raw: Any, *, param: str = "chunking") -> Chunking:
    """The socket's shape (`Chunking.to_json`) as a client sent it: every key and bound checked."""
    if not isinstance(raw, Mapping):
        raise InvalidParameter(f"{param} must be an object", param=param)
    _unknown(raw, tuple(Chunking.__dataclass_fields__), param)
    explicit = raw.get("explicit", False)
    if not isinstance(explicit, bool):
        raise InvalidParameter(f"{param}.explicit must be true or false", param=param)
    return _checked(raw, param=param, explicit=explicit)


def form_value(text: str) -> Any:
    """One `chunking_strategy[key]` multipart field's text as the JSON value it stands for.

    SDKs flatten the object into fields (`chunking_strategy[threshold]=0.4`), so every
    value arrives as text: numbers become numbers, anything else stays text (and is
    then refused where a number is meant).

    >>> form_value("300"), form_value("0.4"), form_value("server_vad"), form_value("true")
    (300, 0.4, 'server_vad', 'true')
    """
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else text
