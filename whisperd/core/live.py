"""The live stream on the socket (protocol version 2): its settings, frames and events.

A `stream` request opens a session; then the client sends frames at any pace and
the daemon answers as it hears speech::

    client                                              daemon
      | -- {"v":2,"op":"stream",..., "stream": {...}} ---> |
      | <------------------------ stream_started --------- |
      | -- {"type":"audio","size":N} + N bytes of PCM ---> |   (repeated, any pace)
      | <---- speech_started / partial / speech_stopped -- |
      | <------------------------------- final ----------- |   (one per utterance)
      | -- {"type":"commit"} | {"type":"clear"} ---------> |   (optional)
      | -- {"type":"end"} --------------------------------> |
      | <------------------------------- final, result --- |

Stdlib only: the fronts (Wyoming, Realtime, whisperctl) build these frames
through `whisperd.client`; the daemon reads them with `whisperd.core.protocol`. `docs/protocol.md`
is the prose version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from whisperd.core import chunking as chunking_rules
from whisperd.core.chunking import Chunking
from whisperd.core.errors import InvalidParameter, ProtocolError

STREAM_VERSION = 2
ENCODINGS = ("s16le", "mulaw", "alaw")  # 16-bit PCM, or 8-bit G.711 (telephony, OpenAI's pcmu/pcma)
MIN_RATE, MAX_RATE = 8_000, 48_000
MAX_CHUNK = 256 * 1024  # bytes of audio in one frame (8 s at 16 kHz; OpenAI allows 15 MiB per event: fronts split)
CLIENT_FRAMES = ("audio", "commit", "clear", "end")
# What the daemon sends during a stream; `result` ends it, `error` ends it too.
EVENTS = ("stream_started", "speech_started", "speech_stopped", "partial", "final")

# Live speech uses OpenAI's Realtime defaults for server VAD: a turn ends after 500 ms quiet.
LIVE_SILENCE_MS = 500
LIVE_VAD = Chunking(silence_duration_ms=LIVE_SILENCE_MS)


@dataclass(frozen=True)
class StreamSettings:
    """How the client's audio comes, and who says where an utterance ends.

    `vad` set: the daemon's Silero VAD ends an utterance after `silence_duration_ms` of
    quiet (and reports `speech_started` / `speech_stopped`). None: only the client's
    `commit` (or `end`) does; partials still come while speech is heard.
    """

    sample_rate: int = 16_000
    encoding: str = "s16le"
    vad: Chunking | None = field(default_factory=lambda: LIVE_VAD)
    partials: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"sample_rate": self.sample_rate, "encoding": self.encoding,
                "vad": None if self.vad is None else self.vad.to_json(), "partials": self.partials}

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self.encoding == "s16le" else 1


def parse_stream_settings(raw: Any) -> StreamSettings:
    if raw is None:
        return StreamSettings()
    if not isinstance(raw, dict):
        raise ProtocolError("header field 'stream' must be an object")
    unknown = set(raw) - {"sample_rate", "encoding", "vad", "partials"}
    if unknown:
        raise ProtocolError(f"unknown stream setting(s): {', '.join(sorted(map(repr, unknown)))[:200]}")
    rate = raw.get("sample_rate", 16_000)
    if isinstance(rate, bool) or not isinstance(rate, int) or not MIN_RATE <= rate <= MAX_RATE:
        raise InvalidParameter(f"sample_rate must be an integer from {MIN_RATE} to {MAX_RATE} Hz, got {rate!r:.20}",
                               param="sample_rate")
    encoding = raw.get("encoding", "s16le")
    if encoding not in ENCODINGS:
        raise InvalidParameter(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r:.20}",
                               param="encoding")
    vad_raw = raw.get("vad", LIVE_VAD.to_json())
    vad = None if vad_raw is None else chunking_rules.from_wire(vad_raw)
    partials = raw.get("partials", True)
    if not isinstance(partials, bool):
        raise ProtocolError("stream setting 'partials' must be true or false")
    return StreamSettings(rate, encoding, vad, partials)


@dataclass(frozen=True)
class ClientFrame:
    """One JSON frame from the client inside a stream; `size`: the audio frame that follows
    (parsed and checked by `whisperd.core.protocol.parse_client_frame`)."""

    type: str
    size: int = 0


def client_frame(kind: str, **body: Any) -> dict[str, Any]:
    return {"type": kind, **body}


# --- what the daemon sends ------------------------------------------------------------


@dataclass(frozen=True)
class Partial:
    """The utterance's text so far; its first `stable` characters will never change."""

    utterance: int
    text: str
    stable: int

    @property
    def stable_text(self) -> str:
        return self.text[: self.stable]


@dataclass(frozen=True)
class Final:
    """An utterance's final text. `text` starts with every stable text its partials sent (so
    increments add up to it); `decoded` is the final decode's own text, the most accurate:
    where an early partial agreed on a wrong word, it has the right one. A client that shows
    increments and then the whole (a command, a caption) takes `decoded`."""

    utterance: int
    text: str
    start: float  # seconds into the stream
    end: float
    language: str | None = None
    processing_seconds: float = 0.0  # from the end of the utterance to this answer
    decoded: str = ""


def event_body(kind: str, **fields: Any) -> dict[str, Any]:
    if kind not in EVENTS:
        raise ValueError(kind)
    return {"v": STREAM_VERSION, "type": kind, **fields}


@dataclass(frozen=True)
class SpeechStarted:
    utterance: int
    audio_ms: int  # where its audio begins in the stream (the pre-roll included)


@dataclass(frozen=True)
class SpeechStopped:
    utterance: int
    audio_ms: int


@dataclass(frozen=True)
class StreamStarted:
    session: dict[str, Any]


@dataclass(frozen=True)
class StreamEnded:
    """The `result` that ends a stream: what it came to."""

    utterances: int
    partials: int
    audio_seconds: float


LiveEvent = StreamStarted | SpeechStarted | SpeechStopped | Partial | Final | StreamEnded


def parse_event(obj: dict[str, Any]) -> LiveEvent:
    """A stream's reply frame as its typed value (an `error` is the caller's to raise)."""
    kind = obj.get("type")
    try:
        if kind == "partial":
            return Partial(int(obj["utterance"]), str(obj["text"]), int(obj["stable"]))
        if kind == "final":
            return Final(int(obj["utterance"]), str(obj["text"]), float(obj["start"]), float(obj["end"]),
                         obj.get("language"), float(obj.get("processing_seconds", 0.0)),
                         str(obj.get("decoded", obj["text"])))
        if kind == "speech_started":
            return SpeechStarted(int(obj["utterance"]), int(obj["audio_ms"]))
        if kind == "speech_stopped":
            return SpeechStopped(int(obj["utterance"]), int(obj["audio_ms"]))
        if kind == "stream_started":
            return StreamStarted(dict(obj.get("session") or {}))
        if kind == "result":
            r = obj.get("result") or {}
            return StreamEnded(int(r.get("utterances", 0)), int(r.get("partials", 0)),
                               float(r.get("audio_seconds", 0.0)))
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"malformed {kind} frame: {exc}"[:200]) from None
    raise ProtocolError(f"unexpected frame {kind!r:.40} in a stream")
