"""The front's own errors, and how any error reaches a Wyoming client: one `error` event.

Wyoming's `error` event is `{text, code?}` with no fixed list of codes, so a
whisperd error keeps its stable code (`whisperd.core.errors`, e.g. `overloaded`,
`model_not_found`, `not_ready`) and its message is the text. After an error the
connection is closed: Home Assistant waits for a `transcript` and would otherwise
wait for its own timeout (it ignores `error` events but sees the end of stream).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from whisperd.core.errors import FrameTimeout, ProtocolError, WhisperdError

if TYPE_CHECKING:
    from wyoming.event import Event


class OutOfOrder(ProtocolError):
    """An event that makes no sense where it came (audio-chunk before audio-start, ...)."""

    code = "out_of_order"


class IdleTimeout(FrameTimeout):
    code = "idle_timeout"


def error_event(err: WhisperdError) -> "Event":
    from wyoming.error import Error

    return Error(text=err.message, code=err.code).event()


class TranscriptTimeout(WhisperdError):
    code = "transcript_timeout"
