"""One Wyoming connection: `describe`, and utterances (`transcribe`, `audio-start` … `audio-stop`).

Home Assistant opens a connection per utterance; a client may also send several
utterances one after another on one connection. Events the front does not know
are ignored (newer clients send more kinds); a `ping` gets its `pong`. Anything
wrong - a bad event, audio out of order, a format we do not take, a daemon that
refuses or is down, silence past `idle_timeout` - gets one `error` event, then
the connection closes, and with it the daemon's live stream: nothing is left open.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.info import Describe
from wyoming.ping import Ping, Pong
from wyoming.server import AsyncEventHandler

from whisperd.core.errors import WhisperdError
from whisperd_wyoming.audio import audio_format
from whisperd_wyoming.config import PROGRAM_NAME
from whisperd_wyoming.errors import IdleTimeout, OutOfOrder, error_event
from whisperd_wyoming.framing import BadEvent, read_event
from whisperd_wyoming.utterance import Utterance

if TYPE_CHECKING:
    from whisperd_wyoming.config import WyomingConfig

log = logging.getLogger("whisperd.wyoming")

LINGER_S = 2.0  # after an error, how long the client's last sends are read and dropped


def _text_field(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise BadEvent(f"transcribe field {key!r} must be a string, got {value!r:.20}")
    return value or None


def _audio_fields(event: Event) -> tuple[Any, Any, Any]:
    data = event.data
    missing = [k for k in ("rate", "width", "channels") if k not in data]
    if missing:
        raise BadEvent(f"{event.type} has no {', '.join(missing)}")
    return data["rate"], data["width"], data["channels"]


class WyomingHandler(AsyncEventHandler):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, config: "WyomingConfig") -> None:
        super().__init__(reader, writer)
        self.config = config
        self.model: str | None = None  # from the last `transcribe`
        self.language: str | None = None
        self.utterance: Utterance | None = None
        self._failed = False

    # --- the connection --------------------------------------------------------------

    async def run(self) -> None:
        """`AsyncEventHandler.run`, with the front's event reader, idle timeout and error ending."""
        self._is_running = True
        try:
            while self._is_running and not self._failed:
                try:
                    async with asyncio.timeout(self.config.idle_timeout):
                        event = await read_event(self.reader)
                except TimeoutError:
                    await self._fail(IdleTimeout(f"no event for {self.config.idle_timeout:g} s (idle_timeout)"))
                    break
                except WhisperdError as err:
                    await self._fail(err)
                    break
                except ConnectionError:
                    break
                if event is None or not await self.handle_event(event):
                    break
            if self._failed:
                await self._linger()
        finally:
            await self.disconnect()
            self.writer.close()

    async def disconnect(self) -> None:
        if self.utterance is not None:
            if not self._failed:
                log.info("the client went away mid-utterance (%.1f s of audio): stream closed",
                         self.utterance.audio_seconds)
            await self._drop_utterance()

    async def _fail(self, err: WhisperdError) -> None:
        """The one `error` event of this connection, then the end of what we send.

        Called by `run` and by the utterance's task (an error from the daemon while audio
        comes in): the end of stream after the error is what tells Home Assistant, which
        waits for a `transcript` and passes over `error` events.
        """
        if self._failed:
            return
        self._failed = True
        log.info("wyoming client error: %s (%s)", err.message, err.code)
        try:
            await self.write_event(error_event(err))
            if self.writer.can_write_eof():
                self.writer.write_eof()
        except (ConnectionError, RuntimeError, OSError):
            pass

    async def _linger(self) -> None:
        """Read and drop what the client still sends, briefly, before closing: closing a socket
        with unread data resets the connection, and a reset can lose the error event."""
        try:
            async with asyncio.timeout(LINGER_S):
                while await self.reader.read(1 << 16):
                    pass
        except (TimeoutError, ConnectionError):
            pass

    async def _drop_utterance(self) -> None:
        utterance, self.utterance = self.utterance, None
        if utterance is not None:
            await utterance.close()

    # --- events ----------------------------------------------------------------------

    async def handle_event(self, event: Event) -> bool:
        if self._failed:
            return False  # the error is sent; what the client sends after it goes unread
        try:
            return await self._dispatch(event)
        except WhisperdError as err:
            await self._fail(err)
            return False
        except (ConnectionError, RuntimeError):
            return False  # the client is gone (a write on a closed transport is a RuntimeError)
        except Exception:  # a bug here must cost this connection, never the server
            log.exception("unexpected error on a %r event", event.type[:40])
            await self._fail(WhisperdError("internal error in whisperd-wyoming (see its log)"))
            return False

    async def _dispatch(self, event: Event) -> bool:
        kind = event.type
        if AudioChunk.is_type(kind):  # first: it is nearly every event
            if self.utterance is None:
                raise OutOfOrder("audio-chunk before audio-start")
            await self.utterance.audio(audio_format(*_audio_fields(event)), event.payload or b"")
        elif Describe.is_type(kind):
            await self.write_event((await self._info()).event())
        elif Transcribe.is_type(kind):
            if self.utterance is not None:
                raise OutOfOrder("transcribe inside an utterance (before its audio-stop)")
            name = _text_field(event.data, "name")
            self.model = None if name == PROGRAM_NAME else name  # the program's own name: its default model
            self.language = _text_field(event.data, "language")
        elif AudioStart.is_type(kind):
            await self._start(event)
        elif AudioStop.is_type(kind):
            if self.utterance is None:
                raise OutOfOrder("audio-stop without audio-start")
            await self.utterance.finish(self.config.transcript_timeout)
            await self._drop_utterance()
            self.model = self.language = None  # a `transcribe` holds for one utterance
        elif Ping.is_type(kind):
            await self.write_event(Pong(text=Ping.from_event(event).text).event())
        else:
            log.debug("ignored a %r event", kind[:40])
        return True

    async def _start(self, event: Event) -> None:
        if self.utterance is not None:
            raise OutOfOrder("audio-start inside an utterance (before its audio-stop)")
        fmt = audio_format(*_audio_fields(event))
        self.utterance = await Utterance.open(self.config.socket, fmt, self.write_event, self._fail,
                                              model=self.model, language=self.language,
                                              max_seconds=self.config.max_utterance_seconds)

    async def _info(self) -> Any:
        from whisperd.client import AsyncClient
        from whisperd_wyoming.info import build_info

        async with AsyncClient(self.config.socket, size=1) as client:
            return build_info(await client.models())
