"""Reading one Wyoming event, with every length checked before anything is allocated.

    {"type": "audio-chunk", "data": {...}?, "data_length": D?, "payload_length": P?, "version": "..."}\\n
    D bytes of JSON, merged into "data"
    P bytes of payload (PCM)

`wyoming.event.async_read_event` reads the same frames but takes a malformed
header for a clean end of stream and reads whatever `payload_length` says. Here
a bad header is a typed error (the client gets an `error` event before the
connection closes) and the lengths are capped. Writing stays `wyoming`'s own.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from whisperd.core.errors import FrameTooLarge, ProtocolError

if TYPE_CHECKING:
    from wyoming.event import Event

MAX_HEADER = 1 << 16  # the header line (asyncio's default stream limit)
MAX_DATA = 1 << 16  # the JSON after it
MAX_PAYLOAD = 1 << 20  # one chunk's PCM: 32 s at 16 kHz mono, 5 s at 48 kHz stereo


class BadEvent(ProtocolError):
    code = "bad_event"


def _length(header: dict[str, Any], key: str, limit: int) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadEvent(f"event field {key!r} must be a non-negative integer, got {value!r:.20}")
    if value > limit:
        raise FrameTooLarge(f"event {key} of {value} bytes exceeds {limit} bytes")
    return value


def parse_header(line: bytes) -> tuple[str, dict[str, Any], int, int]:
    """(type, data, data_length, payload_length) of a header line; BadEvent / FrameTooLarge."""
    try:
        header = json.loads(line)
    except (UnicodeDecodeError, ValueError):
        raise BadEvent("event header is not a JSON object on one line") from None
    if not isinstance(header, dict):
        raise BadEvent("event header must be a JSON object")
    kind = header.get("type")
    if not isinstance(kind, str) or not kind:
        raise BadEvent("event header has no 'type'")
    data = header.get("data")
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise BadEvent(f"event {kind!r:.40}: 'data' must be an object")
    return kind, data, _length(header, "data_length", MAX_DATA), _length(header, "payload_length", MAX_PAYLOAD)


async def read_event(reader: asyncio.StreamReader) -> "Event | None":
    """The next event; None at a clean end of stream (or one cut inside an event)."""
    from wyoming.event import Event

    try:
        line = await reader.readline()
    except ValueError:  # asyncio: the line outgrew the stream's limit
        raise FrameTooLarge(f"event header longer than {MAX_HEADER} bytes") from None
    if not line:
        return None
    if not line.endswith(b"\n"):
        return None  # the stream ended inside the header
    kind, data, data_length, payload_length = parse_header(line)
    try:
        if data_length:
            try:
                more = json.loads(await reader.readexactly(data_length))
            except (UnicodeDecodeError, ValueError):
                raise BadEvent(f"event {kind!r:.40}: its data is not JSON") from None
            if not isinstance(more, dict):
                raise BadEvent(f"event {kind!r:.40}: its data must be an object")
            data = {**data, **more}
        payload = await reader.readexactly(payload_length) if payload_length else None
    except asyncio.IncompleteReadError:
        return None
    return Event(type=kind, data=data, payload=payload)
