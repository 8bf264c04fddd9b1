"""Socket client library for local programs (sync and asyncio). Never loads a model.

    from whisperd.client import Client
    with Client("/run/whisperd/whisperd.sock") as c:
        print(c.transcribe(open("speech.wav", "rb").read())["text"])

    from whisperd.client import AsyncClient
    async with AsyncClient(path) as c:
        reply = await c.transcribe(data, language="en")

A result is the daemon's `result` frame: `reply["result"]` is the transcript
(`text`, `language`, `duration`, `segments`, `task`), plus `worker`, `model`.
Errors arrive as `whisperd.core.errors.WhisperdError` subclasses with stable codes.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Callable

from whisperd.core import protocol
from whisperd.core.errors import NotReady, WhisperdError


class ConnectionLost(Exception):
    """The socket closed under a request (internal; surfaces as NotReady)."""


# Called with each `progress` / `segment` frame while a transcription runs.
FrameCallback = Callable[[dict[str, Any]], Any]


def _transcribe_request(
    audio_size: int, *, model: str | None, progress: bool, segments: bool, options: dict[str, Any]
) -> protocol.Request:
    return protocol.Request(
        op="transcribe",
        id=protocol.new_id(),
        model=model,
        audio_size=audio_size,
        options=protocol.TranscribeOptions(**{k: v for k, v in options.items() if v is not None}),
        progress=progress,
        segments=segments,
    )


def _final(reply: dict[str, Any]) -> dict[str, Any] | None:
    """The reply if it ends the request; raise its error if it is one; None for interim."""
    if reply["type"] == "result":
        return reply
    if reply["type"] == "error":
        raise WhisperdError.from_wire(reply.get("error") or {})
    return None


class AsyncConnection:
    """One socket connection; requests on it run one after another."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, path: str) -> "AsyncConnection":
        try:
            reader, writer = await asyncio.open_unix_connection(path, limit=1 << 20)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise NotReady(f"whisperd is not running (no daemon on {path}: {exc.strerror})") from None
        except PermissionError:
            raise NotReady(f"permission denied on {path} (is this user in the socket's group?)") from None
        return cls(reader, writer)

    @property
    def closed(self) -> bool:
        return self.writer.is_closing() or self.reader.at_eof()

    async def request(self, request: protocol.Request, audio: bytes | None = None,
                      on_frame: FrameCallback | None = None) -> dict[str, Any]:
        try:
            self.writer.write(request.to_frame())
            if audio is not None:
                self.writer.write(protocol.LENGTH.pack(len(audio)))
                self.writer.write(audio)
            await self.writer.drain()
        except ConnectionError:
            pass  # a refusal (e.g. too large) may be waiting to be read; an EOF says otherwise
        while True:
            try:
                payload = await protocol.read_frame(self.reader, protocol.MAX_REPLY)
            except (EOFError, ConnectionError):
                raise ConnectionLost("the daemon closed the connection before answering") from None
            reply = protocol.parse_reply(payload)
            final = _final(reply)
            if final is not None:
                return final
            if on_frame is not None:
                result = on_frame(reply)
                if asyncio.iscoroutine(result):
                    await result

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


class AsyncClient:
    """A small pool of connections to the daemon, safe for concurrent use."""

    def __init__(self, path: str, *, size: int = 4) -> None:
        self.path = path
        self._idle: list[AsyncConnection] = []
        self._slots = asyncio.Semaphore(size)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()

    async def _checkout(self) -> tuple[AsyncConnection, bool]:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn, True
            await conn.close()
        return await AsyncConnection.open(self.path), False

    async def _call(self, request: protocol.Request, audio: bytes | None = None,
                    on_frame: FrameCallback | None = None) -> dict[str, Any]:
        async with self._slots:
            conn, reused = await self._checkout()
            try:
                try:
                    reply = await conn.request(request, audio, on_frame)
                except ConnectionLost:
                    if not reused:
                        raise
                    # A pooled connection the daemon dropped meanwhile (a restart): once more, fresh.
                    await conn.close()
                    conn = await AsyncConnection.open(self.path)
                    reply = await conn.request(request, audio, on_frame)
            except ConnectionLost as exc:
                await conn.close()
                raise NotReady(f"lost the connection to whisperd: {exc}") from None
            except WhisperdError:
                self._checkin(conn)  # an error frame leaves the connection usable unless closed
                raise
            except BaseException:
                await conn.close()  # cancelled mid-request: the stream's state is unknown
                raise
            self._checkin(conn)
            return reply

    def _checkin(self, conn: AsyncConnection) -> None:
        if conn.closed:
            conn.writer.close()
        else:
            self._idle.append(conn)

    async def status(self) -> dict[str, Any]:
        return (await self._call(protocol.Request(op="status", id=protocol.new_id())))["result"]

    async def models(self) -> list[dict[str, Any]]:
        return (await self._call(protocol.Request(op="models", id=protocol.new_id())))["result"]["models"]

    async def transcribe(
        self,
        audio: bytes,
        *,
        model: str | None = None,
        on_frame: FrameCallback | None = None,
        progress: bool = False,
        segments: bool = False,
        **options: Any,
    ) -> dict[str, Any]:
        request = _transcribe_request(len(audio), model=model, progress=progress,
                                      segments=segments, options=options)
        return await self._call(request, audio, on_frame)


class Client:
    """Blocking client over one connection (scripts, whisperctl)."""

    def __init__(self, path: str, *, timeout: float | None = None) -> None:
        self.path = path
        self.timeout = timeout
        self._sock: socket.socket | None = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.path)
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                sock.close()
                raise NotReady(f"whisperd is not running (no daemon on {self.path}: {exc.strerror})") from None
            except PermissionError:
                sock.close()
                raise NotReady(f"permission denied on {self.path} (is this user in the socket's group?)") from None
            self._sock = sock
        return self._sock

    def _recv_exact(self, n: int) -> bytes:
        sock = self._connect()
        chunks, remaining, resets = [], n, 0
        while remaining:
            try:
                chunk = sock.recv(min(remaining, 1 << 20))
            except ConnectionResetError:
                # Linux reports a reset once when the daemon closed with our data unread;
                # the error frame it sent before closing is still queued behind it.
                resets += 1
                if resets > 1:
                    raise
                continue
            if not chunk:
                self.close()
                raise ConnectionLost("the daemon closed the connection before answering")
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def _call(self, request: protocol.Request, audio: bytes | None = None,
              on_frame: FrameCallback | None = None) -> dict[str, Any]:
        sock = self._connect()
        try:
            sock.sendall(request.to_frame())
            if audio is not None:
                sock.sendall(protocol.LENGTH.pack(len(audio)))
                sock.sendall(audio)
        except (BrokenPipeError, ConnectionResetError) as exc:
            # The daemon may have refused the request (e.g. too large) and closed before
            # reading it all: its error frame is still waiting to be read.
            try:
                return self._read_replies(on_frame)
            except (ConnectionLost, OSError):
                self.close()
                raise NotReady(f"lost the connection to whisperd: {exc}") from None
        try:
            return self._read_replies(on_frame)
        except (ConnectionLost, BrokenPipeError, ConnectionResetError) as exc:
            self.close()
            raise NotReady(f"lost the connection to whisperd: {exc}") from None

    def _read_replies(self, on_frame: FrameCallback | None) -> dict[str, Any]:
        while True:
            length = protocol.parse_length(self._recv_exact(4), protocol.MAX_REPLY)
            reply = protocol.parse_reply(self._recv_exact(length))
            final = _final(reply)
            if final is not None:
                return final
            if on_frame is not None:
                on_frame(reply)

    def status(self) -> dict[str, Any]:
        return self._call(protocol.Request(op="status", id=protocol.new_id()))["result"]

    def models(self) -> list[dict[str, Any]]:
        return self._call(protocol.Request(op="models", id=protocol.new_id()))["result"]["models"]

    def transcribe(self, audio: bytes, *, model: str | None = None, on_frame: FrameCallback | None = None,
                   progress: bool = False, segments: bool = False, **options: Any) -> dict[str, Any]:
        request = _transcribe_request(len(audio), model=model, progress=progress,
                                      segments=segments, options=options)
        return self._call(request, audio, on_frame)
