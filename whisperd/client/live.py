"""A live session from a local program: send audio as it is recorded, read words as they come.

    from whisperd.client import AsyncClient
    from whisperd.core.live import Final, Partial

    async with AsyncClient("/run/whisperd/whisperd.sock") as c:
        async with await c.stream(language="en", sample_rate=16000) as live:
            for chunk in microphone():            # 16-bit mono PCM, any chunk size
                await live.send_audio(chunk)
            await live.end()                      # what is still open gets its final
            async for event in live:              # Partial, Final, SpeechStarted, ...
                if isinstance(event, Final):
                    print(event.text)

Events are read in the background from the moment the session opens, so they may
be taken while audio is still being sent (`async for` in another task, or
`next_event()`). The session has its own connection; `close()` (or leaving the
`async with`) ends it.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from whisperd.core import live, protocol
from whisperd.core.chunking import Chunking
from whisperd.core.errors import NotReady, ProtocolError, WhisperdError

_END = object()  # the queue's last item: the stream is over (its reason, if any, in `_failure`)


class LiveStream:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: dict[str, Any]) -> None:
        self._reader, self._writer = reader, writer
        self.session = session  # what the daemon made of the request: model, rate, vad, language
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._failure: BaseException | None = None
        self.ended: live.StreamEnded | None = None
        self._task = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, path: str, *, model: str | None = None, language: str | None = None,
                   prompt: str | None = None, beam_size: int | None = None, task: str = "transcribe",
                   sample_rate: int = 16_000, encoding: str = "s16le", vad: Chunking | None = live.LIVE_VAD,
                   partials: bool = True) -> "LiveStream":
        """Open a session; `vad` None: utterances end only at `commit()` / `end()`."""
        from whisperd.client import AsyncConnection

        conn = await AsyncConnection.open(path)  # its errors say why the socket cannot be used
        reader, writer = conn.reader, conn.writer
        request = protocol.Request(
            op="stream", id=protocol.new_id(), model=model,
            options=protocol.TranscribeOptions(task=task, language=language, prompt=prompt, beam_size=beam_size),
            stream=live.StreamSettings(sample_rate, encoding, vad, partials))
        try:
            writer.write(request.to_frame())
            await writer.drain()
            reply = protocol.parse_reply(await protocol.read_frame(reader, protocol.MAX_REPLY))
        except (EOFError, ConnectionError):
            writer.close()
            raise NotReady("whisperd closed the connection before the stream opened") from None
        except BaseException:
            writer.close()
            raise
        if reply["type"] == "error":
            writer.close()
            raise WhisperdError.from_wire(reply.get("error") or {})
        event = live.parse_event(reply)
        if not isinstance(event, live.StreamStarted):
            writer.close()
            raise ProtocolError("the daemon did not open the stream")
        return cls(reader, writer, event.session)

    async def __aenter__(self) -> "LiveStream":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # --- sending -----------------------------------------------------------------------

    async def _send(self, frame: dict[str, Any], data: bytes | None = None) -> None:
        if self._failure is not None:
            raise self._failure
        try:
            self._writer.write(protocol.json_frame(frame))
            if data is not None:
                self._writer.write(protocol.frame(data))
            await self._writer.drain()
        except ConnectionError:
            raise NotReady("the connection to whisperd was lost") from None

    async def send_audio(self, data: bytes) -> None:
        """PCM in the session's encoding and rate; any size (split into frames here)."""
        for at in range(0, len(data), live.MAX_CHUNK):
            piece = data[at:at + live.MAX_CHUNK]
            await self._send(live.client_frame("audio", size=len(piece)), piece)

    async def commit(self) -> None:
        await self._send(live.client_frame("commit"))

    async def clear(self) -> None:
        await self._send(live.client_frame("clear"))

    async def end(self) -> None:
        """No more audio: the open utterance gets its final, then the stream ends (`ended`)."""
        await self._send(live.client_frame("end"))

    # --- receiving ---------------------------------------------------------------------

    async def _read(self) -> None:
        try:
            while True:
                reply = protocol.parse_reply(await protocol.read_frame(self._reader, protocol.MAX_REPLY))
                if reply["type"] == "error":
                    raise WhisperdError.from_wire(reply.get("error") or {})
                event = live.parse_event(reply)
                if isinstance(event, live.StreamEnded):
                    self.ended = event
                    break
                self._events.put_nowait(event)
        except (EOFError, ConnectionError):
            self._failure = NotReady("whisperd closed the live stream")
        except WhisperdError as err:
            self._failure = err
        except asyncio.CancelledError:
            self._failure = NotReady("the live stream was closed")
        finally:
            self._events.put_nowait(_END)

    async def next_event(self) -> live.LiveEvent | None:
        """The next event; None once the stream has ended; raises the error that ended it."""
        item = await self._events.get()
        if item is _END:
            self._events.put_nowait(_END)  # every later call sees the end too
            if self.ended is None and self._failure is not None:
                raise self._failure
            return None
        return item

    async def __aiter__(self) -> AsyncIterator[live.LiveEvent]:
        while (event := await self.next_event()) is not None:
            yield event

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass
