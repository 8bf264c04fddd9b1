"""Socket client library for local programs (sync and asyncio). Never loads a model.

    from whisperd.client import Client

    with Client("/run/whisperd/whisperd.sock") as c:
        result = c.transcribe(open("speech.wav", "rb").read(), language="en")
        print(result.text)
        print(f"{result.transcript.duration:.1f} s of audio on the {result.worker} worker")

    import asyncio
    from whisperd.client import AsyncClient

    async def main() -> None:
        async with AsyncClient("/run/whisperd/whisperd.sock") as c:
            status = await c.status()
            print(status.status, status.model, [m.id for m in await c.models()])
            result = await c.transcribe(open("speech.wav", "rb").read(), word_timestamps=True)
            print([w.word for w in result.transcript.words])

    asyncio.run(main())

Replies are the typed values of `whisperd.core.replies`: `transcribe()` returns a
`TranscribeResult` (`.text`, `.transcript` with its segments and words, `.worker`,
`.model`, `.processing_seconds`), `status()` a `DaemonStatus`, `models()` a list of
`ModelEntry`. The options are keyword arguments, so a misspelled one is Python's own
`TypeError`. Errors arrive as `whisperd.core.errors.WhisperdError` subclasses with
stable codes. (`tests/service/test_client_examples.py` runs these examples.)
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, Any, Callable

from whisperd.core import protocol
from whisperd.core.chunking import Chunking
from whisperd.core.errors import NotReady, WhisperdError
from whisperd.core.replies import DaemonStatus, ModelEntry, RescanResult, TranscribeResult, model_list_from_dict

if TYPE_CHECKING:
    from whisperd.client.live import LiveStream


class ConnectionLost(Exception):
    """The socket closed under a request (internal; surfaces as NotReady)."""


# Called with each `progress` / `segment` frame while a transcription runs.
FrameCallback = Callable[[dict[str, Any]], Any]


def _transcribe_request(
    audio_size: int, *, model: str | None, language: str | None, prompt: str | None,
    temperature: float | None, word_timestamps: bool, beam_size: int | None, task: str,
    chunking: Chunking | None, logprobs: bool, progress: bool, segments: bool,
) -> protocol.Request:
    options = protocol.TranscribeOptions(
        task=task, language=language, prompt=prompt,
        temperature=0.0 if temperature is None else temperature,
        word_timestamps=word_timestamps, beam_size=beam_size, chunking=chunking, logprobs=logprobs,
    )
    return protocol.Request(op="transcribe", id=protocol.new_id(), model=model, audio_size=audio_size,
                            options=options, progress=progress, segments=segments)


def _request(op: str) -> protocol.Request:
    return protocol.Request(op=op, id=protocol.new_id())


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

    async def ping(self) -> bool:
        return bool((await self._call(_request("ping")))["result"].get("pong"))

    async def status(self) -> DaemonStatus:
        return DaemonStatus.from_dict((await self._call(_request("status")))["result"])

    async def models(self) -> list[ModelEntry]:
        return model_list_from_dict((await self._call(_request("models")))["result"])

    async def rescan(self) -> RescanResult:
        """Ask the daemon to read its models folder again; the result names what it serves now."""
        return RescanResult.from_dict((await self._call(_request("rescan")))["result"])

    async def transcribe(
        self,
        audio: bytes,
        *,
        model: str | None = None,
        language: str | None = None,
        prompt: str | None = None,
        temperature: float | None = None,
        word_timestamps: bool = False,
        beam_size: int | None = None,
        task: str = "transcribe",
        chunking: Chunking | None = None,
        logprobs: bool = False,
        progress: bool = False,
        segments: bool = False,
        on_frame: FrameCallback | None = None,
    ) -> TranscribeResult:
        """Transcribe an audio file's bytes (any format the daemon decodes).

        `model`: a served model's name (default: the daemon's); `language`: a code,
        locale tag or name (default: detect); `temperature` None or 0: Whisper's
        fallback sequence; `beam_size` None: the daemon's default; `task`:
        "transcribe" or "translate" (into English); `chunking`: how a long recording is
        cut into windows (`whisperd.core.chunking`, None: the daemon's defaults);
        `logprobs`: each segment's text tokens with their log probabilities
        (`Segment.logprobs`, `transcript.logprobs`). `progress` / `segments` ask for
        those frames while it runs, each passed to `on_frame` (which may be async).
        """
        request = _transcribe_request(
            len(audio), model=model, language=language, prompt=prompt, temperature=temperature,
            word_timestamps=word_timestamps, beam_size=beam_size, task=task, chunking=chunking, logprobs=logprobs,
            progress=progress, segments=segments,
        )
        return TranscribeResult.from_dict(await self._call(request, audio, on_frame))

    async def stream(self, **settings: Any) -> "LiveStream":
        """Open a live session (its own connection): `whisperd.client.live.LiveStream.open`'s
        keyword arguments - model, language, prompt, sample_rate, encoding, vad, partials."""
        from whisperd.client.live import LiveStream

        return await LiveStream.open(self.path, **settings)


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

    def ping(self) -> bool:
        return bool(self._call(_request("ping"))["result"].get("pong"))

    def status(self) -> DaemonStatus:
        return DaemonStatus.from_dict(self._call(_request("status"))["result"])

    def models(self) -> list[ModelEntry]:
        return model_list_from_dict(self._call(_request("models"))["result"])

    def rescan(self) -> RescanResult:
        """As `AsyncClient.rescan`, blocking."""
        return RescanResult.from_dict(self._call(_request("rescan"))["result"])

    def transcribe(
        self,
        audio: bytes,
        *,
        model: str | None = None,
        language: str | None = None,
        prompt: str | None = None,
        temperature: float | None = None,
        word_timestamps: bool = False,
        beam_size: int | None = None,
        task: str = "transcribe",
        chunking: Chunking | None = None,
        logprobs: bool = False,
        progress: bool = False,
        segments: bool = False,
        on_frame: FrameCallback | None = None,
    ) -> TranscribeResult:
        """As `AsyncClient.transcribe`, blocking (`on_frame` is called, never awaited)."""
        request = _transcribe_request(
            len(audio), model=model, language=language, prompt=prompt, temperature=temperature,
            word_timestamps=word_timestamps, beam_size=beam_size, task=task, chunking=chunking, logprobs=logprobs,
            progress=progress, segments=segments,
        )
        return TranscribeResult.from_dict(self._call(request, audio, on_frame))
