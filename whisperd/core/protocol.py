"""Wire format of the whisperd Unix socket, versions 1 and 2. Stdlib only; knows no model.

Every message is a frame::

    +-------------------------+------------------------------+
    | length: uint32, big end | payload: `length` bytes      |
    +-------------------------+------------------------------+

A request is one JSON header frame, followed - for ``op == "transcribe"`` only -
by exactly one binary frame holding the audio file's bytes (``audio_size`` of
them). Replies are JSON frames: zero or more ``progress`` / ``segment`` frames,
then one final ``result`` or ``error``. A connection carries many requests in
turn. Everything is checked before anything is allocated: the length prefix
against ``MAX_HEADER`` (or the audio limit), then every header field. A broken
frame gets an ``error`` frame and the connection is closed. `docs/protocol.md`
is the prose version of this module; the replies' typed forms are in
`whisperd.core.replies`.

Version 2 adds one op, `stream` (a live session: `whisperd.core.live`), and
changes nothing else: a daemon accepts headers of either version, replies that
exist in version 1 keep `"v": 1` (a v1 client reads them as before), and only a
stream's own frames carry `"v": 2`. A v1 daemon refuses `stream` with
`unsupported_version`, which is how a client learns it is too old.

What is checked here is the frame: its fields' types, sizes and bounds (a task
this protocol knows, a temperature in 0..1, a beam of 1..16), all before the
audio is read. What depends on the model or the daemon's settings - which model
a name means, what an English-only model cannot do - is the daemon's
(`whisperd.daemon.requests`).
"""

from __future__ import annotations

import json
import re
import struct
import uuid
from dataclasses import dataclass, field
from typing import Any

from whisperd.core import chunking as chunking_rules
from whisperd.core import live
from whisperd.core.chunking import Chunking
from whisperd.core.errors import (
    FrameTooLarge,
    InvalidParameter,
    ProtocolError,
    UnknownOp,
    UnsupportedVersion,
    WhisperdError,
)

VERSION = 1  # what every v1 frame says, in either direction
STREAM_VERSION = live.STREAM_VERSION  # what a stream request and its frames say
VERSIONS = (VERSION, STREAM_VERSION)
MAX_HEADER = 64 * 1024  # bytes of JSON in one request header frame
# A reply carries a whole transcript (hours of words with timestamps), so clients
# accept larger reply frames than the daemon accepts headers.
MAX_REPLY = 256 * 1024 * 1024
DEFAULT_MAX_AUDIO = 64 * 1024 * 1024  # daemon default; configurable
LENGTH = struct.Struct(">I")
OPS = ("transcribe", "status", "models", "ping", "rescan", "stream")
STREAM_OPS = ("stream",)  # ops that need version 2
TASKS = ("transcribe", "translate")
MAX_ID = 64
MAX_PROMPT = 8 * 1024
MAX_MODEL_NAME = 256
_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def frame(payload: bytes) -> bytes:
    return LENGTH.pack(len(payload)) + payload


def json_frame(obj: dict[str, Any]) -> bytes:
    return frame(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode())


def parse_length(prefix: bytes, limit: int) -> int:
    """Check a 4-byte length prefix against `limit` before reading the payload."""
    if len(prefix) != LENGTH.size:
        raise ProtocolError("truncated frame length")
    (length,) = LENGTH.unpack(prefix)
    if length > limit:
        raise FrameTooLarge(f"frame of {length} bytes exceeds the limit of {limit} bytes")
    return length


@dataclass(frozen=True)
class TranscribeOptions:
    """What the client asks of one transcription (mirrors engines.base.Options)."""

    task: str = "transcribe"
    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0
    word_timestamps: bool = False
    beam_size: int | None = None  # None: the daemon's configured default
    # How a long recording is cut into windows; None: the daemon's defaults.
    chunking: Chunking | None = None
    logprobs: bool = False  # each segment's text tokens with their log probabilities

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if v is not None and k not in ("chunking", "logprobs")}
        # Sent only when asked: a daemon older than these options refuses options it does not know.
        if self.chunking is not None:
            out["chunking"] = self.chunking.to_json()
        if self.logprobs:
            out["logprobs"] = True
        return out


@dataclass(frozen=True)
class Request:
    op: str
    id: str
    model: str | None = None
    audio_size: int = 0
    options: TranscribeOptions = field(default_factory=TranscribeOptions)
    progress: bool = False  # send `progress` frames (fraction of audio done)
    segments: bool = False  # send a `segment` frame per decoded segment (streaming)
    stream: live.StreamSettings | None = None  # op "stream" only

    def to_frame(self) -> bytes:
        version = STREAM_VERSION if self.op in STREAM_OPS else VERSION
        header: dict[str, Any] = {"v": version, "op": self.op, "id": self.id}
        if self.op == "stream":
            header.update(options=self.options.to_json(),
                          stream=(self.stream or live.StreamSettings()).to_json())
        if self.op == "transcribe":
            header.update(
                audio_size=self.audio_size,
                options=self.options.to_json(),
                progress=self.progress,
                segments=self.segments,
            )
        if self.model is not None:
            header["model"] = self.model
        return json_frame(header)


def new_id() -> str:
    return uuid.uuid4().hex[:16]


def _expect(obj: dict[str, Any], key: str, types: tuple[type, ...], what: str) -> Any:
    value = obj.get(key)
    # bool is an int in Python; never accept it where a number is meant.
    if value is None or (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        raise ProtocolError(f"header field {key!r} must be {what}")
    return value


def _optional(obj: dict[str, Any], key: str, types: tuple[type, ...], what: str) -> Any:
    if obj.get(key) is None:
        return None
    return _expect(obj, key, types, what)


def parse_options(raw: Any) -> TranscribeOptions:
    if raw is None:
        return TranscribeOptions()
    if not isinstance(raw, dict):
        raise ProtocolError("header field 'options' must be an object")
    unknown = set(raw) - set(TranscribeOptions.__dataclass_fields__)
    if unknown:
        # repr: a name is the client's text, and must not carry a line break into a log.
        raise ProtocolError(f"unknown option(s): {', '.join(sorted(map(repr, unknown)))[:200]}")
    task = _optional(raw, "task", (str,), "a string") or "transcribe"
    if task not in TASKS:
        raise InvalidParameter(f"task must be one of {', '.join(TASKS)}", param="task")
    language = _optional(raw, "language", (str,), "a string")
    if language is not None and len(language) > 32:
        raise InvalidParameter("language is too long", param="language")
    prompt = _optional(raw, "prompt", (str,), "a string")
    if prompt is not None and len(prompt) > MAX_PROMPT:
        raise InvalidParameter(f"prompt is longer than {MAX_PROMPT} characters", param="prompt")
    temperature = _optional(raw, "temperature", (int, float), "a number")
    temperature = 0.0 if temperature is None else float(temperature)
    if not 0.0 <= temperature <= 1.0:
        raise InvalidParameter("temperature must be between 0 and 1", param="temperature")
    words = _optional(raw, "word_timestamps", (bool,), "true or false") or False
    beam = _optional(raw, "beam_size", (int,), "an integer")
    if beam is not None and not 1 <= beam <= 16:
        raise InvalidParameter("beam_size must be between 1 and 16", param="beam_size")
    chunking = None if raw.get("chunking") is None else chunking_rules.from_wire(raw["chunking"])
    logprobs = _optional(raw, "logprobs", (bool,), "true or false") or False
    return TranscribeOptions(task, language or None, prompt or None, temperature, words, beam, chunking, logprobs)


def _json_object(payload: bytes, what: str) -> dict[str, Any]:
    """A frame's JSON object; ProtocolError naming `what` (header, reply, stream frame) otherwise."""
    try:
        obj = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"{what} is not valid JSON: {exc}"[:200]) from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} must be a JSON object")
    return obj


def parse_request(payload: bytes, *, max_audio: int = DEFAULT_MAX_AUDIO) -> Request:
    """Validate a header frame completely; raise a typed ProtocolError otherwise."""
    if len(payload) > MAX_HEADER:
        raise FrameTooLarge(f"header of {len(payload)} bytes exceeds {MAX_HEADER} bytes")
    obj = _json_object(payload, "header")
    version = obj.get("v")
    if version not in VERSIONS or isinstance(version, bool):
        raise UnsupportedVersion(f"unsupported protocol version {version!r:.20}; this daemon speaks "
                                 f"{' and '.join(map(str, VERSIONS))}")
    op = obj.get("op")
    if op not in OPS:
        raise UnknownOp(f"unknown op {op!r:.40}; expected one of {', '.join(OPS)}")
    if op in STREAM_OPS and version < STREAM_VERSION:
        raise UnsupportedVersion(f"op {op!r} needs protocol version {STREAM_VERSION}")
    rid = obj.get("id")
    if rid is None:
        rid = new_id()
    elif not isinstance(rid, str) or not _ID_RE.match(rid):
        raise ProtocolError("header field 'id' must be 1-64 characters of [A-Za-z0-9._:-]")
    model = _optional(obj, "model", (str,), "a string")
    if model is not None and not 0 < len(model) <= MAX_MODEL_NAME:
        raise InvalidParameter("model name is too long", param="model")
    if op == "stream":
        return Request(op=op, id=rid, model=model, options=parse_options(obj.get("options")),
                       stream=live.parse_stream_settings(obj.get("stream")))
    if op != "transcribe":
        return Request(op=op, id=rid, model=model)
    audio_size = _expect(obj, "audio_size", (int,), "a non-negative integer")
    if audio_size < 0:
        raise ProtocolError("header field 'audio_size' must be a non-negative integer")
    if audio_size > max_audio:
        raise FrameTooLarge(
            f"audio of {audio_size} bytes exceeds the daemon's limit of {max_audio} bytes"
        )
    return Request(
        op=op,
        id=rid,
        model=model,
        audio_size=audio_size,
        options=parse_options(obj.get("options")),
        progress=bool(_optional(obj, "progress", (bool,), "true or false")),
        segments=bool(_optional(obj, "segments", (bool,), "true or false")),
    )


# --- replies -------------------------------------------------------------------------


def reply_frame(kind: str, body: dict[str, Any]) -> bytes:
    """`body` (a typed reply's `to_dict()`, see `whisperd.core.replies`) in the v1 envelope."""
    return json_frame({"v": VERSION, "type": kind, **body})


def result_frame(rid: str, result: dict[str, Any], **extra: Any) -> bytes:
    return reply_frame("result", {"id": rid, "result": result, **extra})


def error_frame(rid: str | None, err: WhisperdError) -> bytes:
    return json_frame({"v": VERSION, "type": "error", "id": rid, "error": err.to_wire()})


def progress_frame(rid: str, fraction: float, duration: float | None = None) -> bytes:
    frame = {"v": VERSION, "type": "progress", "id": rid, "fraction": round(fraction, 4)}
    if duration is not None:
        frame["duration"] = round(duration, 3)  # seconds of audio in all
    return json_frame(frame)


def segment_frame(rid: str, segment: dict[str, Any]) -> bytes:
    return json_frame({"v": VERSION, "type": "segment", "id": rid, "segment": segment})


def parse_client_frame(payload: bytes) -> live.ClientFrame:
    """One JSON frame of the client's inside a stream, checked before its audio is read."""
    obj = _json_object(payload, "stream frame")
    kind = obj.get("type")
    if kind not in live.CLIENT_FRAMES:
        raise ProtocolError(f"unknown stream frame {kind!r:.40}; expected one of {', '.join(live.CLIENT_FRAMES)}")
    if kind != "audio":
        return live.ClientFrame(kind)
    size = obj.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ProtocolError("audio frame 'size' must be a non-negative integer")
    if size > live.MAX_CHUNK:
        raise FrameTooLarge(f"audio chunk of {size} bytes exceeds {live.MAX_CHUNK} bytes; send smaller chunks")
    return live.ClientFrame("audio", size)


def stream_frame(rid: str, kind: str, **fields: Any) -> bytes:
    """A stream event (`whisperd.core.live.EVENTS`), version 2."""
    return json_frame({**live.event_body(kind, **fields), "id": rid})


REPLY_TYPES = ("result", "error", "progress", "segment", *live.EVENTS)


def parse_reply(payload: bytes) -> dict[str, Any]:
    obj = _json_object(payload, "reply")
    if obj.get("type") not in REPLY_TYPES:
        raise ProtocolError("reply is not a whisperd frame")
    if obj.get("v") not in VERSIONS or isinstance(obj.get("v"), bool):
        raise UnsupportedVersion(f"daemon speaks protocol {obj.get('v')!r:.20}, client "
                                 f"{' and '.join(map(str, VERSIONS))}")
    return obj


# --- asyncio stream helpers ----------------------------------------------------------


async def read_frame(reader: Any, limit: int) -> bytes:
    """Read one frame; raise EOFError on a clean close between frames."""
    import asyncio

    try:
        prefix = await reader.readexactly(LENGTH.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise EOFError from None
        raise ProtocolError("connection closed inside a frame length") from None
    length = parse_length(prefix, limit)
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise ProtocolError("connection closed inside a frame") from None
