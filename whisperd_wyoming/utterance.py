"""One utterance: `audio-start` … `audio-stop` on one live stream of the daemon.

    client → audio-start ──── open the stream ───────────▶ daemon   → transcript-start
             audio-chunk … ── send_audio (mixed to mono) ─▶          → transcript-chunk … (newly stable text)
             audio-stop ───── end() ──────────────────────▶          → transcript-chunk (the rest), transcript,
                                                                       transcript-stop

The stream runs with `vad=None`: Home Assistant finds the end of speech itself
and sends `audio-stop`, so only that ends the utterance; the daemon still sends
partials while the audio grows. The daemon's events are read in a task of their
own, so chunks go out while audio still comes in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Awaitable, Callable

from whisperd.core.errors import AudioTooLong, WhisperdError
from whisperd.core.live import Final, Partial
from whisperd_wyoming.audio import AudioFormat, MonoMixer, UnsupportedAudio
from whisperd_wyoming.chunks import StableText
from whisperd_wyoming.errors import TranscriptTimeout

if TYPE_CHECKING:
    from whisperd.client.live import LiveStream
    from wyoming.event import Event

log = logging.getLogger("whisperd.wyoming")

Send = Callable[["Event"], Awaitable[None]]
OnFailure = Callable[[WhisperdError], Awaitable[None]]


class Utterance:
    def __init__(self, stream: "LiveStream", fmt: AudioFormat, send: Send, on_failure: OnFailure, *,
                 language: str | None, max_seconds: float) -> None:
        self.stream, self.format, self._send, self._on_failure = stream, fmt, send, on_failure
        self.language = language
        self.max_bytes = int(max_seconds * fmt.rate) * fmt.frame_bytes
        self.received = 0  # bytes of audio from the client
        self.mixer = MonoMixer(fmt.channels)
        self.stable = StableText()
        self.finals: list[Final] = []
        self.chunks = 0
        self.failure: WhisperdError | None = None
        self._finishing = False
        self._pump: asyncio.Task | None = None

    @classmethod
    async def open(cls, socket: str, fmt: AudioFormat, send: Send, on_failure: OnFailure, *, model: str | None,
                   language: str | None, max_seconds: float) -> "Utterance":
        """Open the daemon's stream and send `transcript-start`; WhisperdError if the daemon refuses."""
        from whisperd.client.live import LiveStream
        from wyoming.asr import TranscriptStart

        stream = await LiveStream.open(socket, model=model, language=language, sample_rate=fmt.rate,
                                       encoding="s16le", vad=None, partials=True)
        # The daemon's own reading of the language ("en-US" → "en"; English-only models: "en").
        utterance = cls(stream, fmt, send, on_failure, language=stream.session.get("language") or language,
                        max_seconds=max_seconds)
        try:
            await send(TranscriptStart(language=utterance.language).event())
        except BaseException:
            await stream.close()
            raise
        utterance._pump = asyncio.ensure_future(utterance._forward())
        return utterance

    @property
    def audio_seconds(self) -> float:
        return self.received / self.format.frame_bytes / self.format.rate

    async def audio(self, fmt: AudioFormat, pcm: bytes) -> None:
        if fmt != self.format:
            raise UnsupportedAudio(f"an audio-chunk of {fmt.describe()} in a stream that started as "
                                   f"{self.format.describe()}")
        self.received += len(pcm)
        if self.received > self.max_bytes:
            raise AudioTooLong(f"the utterance passed {self.max_bytes // self.format.frame_bytes // self.format.rate}"
                               " s of audio (max_utterance_seconds)")
        await self.stream.send_audio(self.mixer.feed(pcm))

    async def _forward(self) -> None:
        """The daemon's events → transcript-chunks; the finals are kept for `finish`."""
        from wyoming.asr import TranscriptChunk

        try:
            async for event in self.stream:
                if isinstance(event, Partial):
                    if text := self.stable.advance(event.stable_text):
                        self.chunks += 1
                        await self._send(TranscriptChunk(text=text).event())
                elif isinstance(event, Final):
                    self.finals.append(event)
        except WhisperdError as err:
            self.failure = err
            if not self._finishing:
                await self._on_failure(err)
        except (ConnectionError, RuntimeError):
            pass  # the client went away; its connection's end closes the stream

    async def finish(self, timeout: float) -> str:
        """`audio-stop`: end the stream, then send the last chunk, `transcript`, `transcript-stop`.

        Returns the transcript's text; raises the WhisperdError that ended the stream, or
        TranscriptTimeout.
        """
        from wyoming.asr import Transcript, TranscriptChunk, TranscriptStop

        assert self._pump is not None
        self._finishing = True
        stopped = time.monotonic()
        await self.stream.end()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._pump)
        except TimeoutError:
            raise TranscriptTimeout(f"no transcript from the daemon {timeout:g} s after audio-stop "
                                    "(transcript_timeout)") from None
        if self.failure is not None:
            raise self.failure
        # The chunks add up to the stable-consistent text; the transcript Home Assistant acts on
        # is the final decode's own, which may correct a word an early partial got wrong.
        streamed = " ".join(f.text for f in self.finals if f.text)
        text = " ".join(f.decoded for f in self.finals if f.decoded)
        language = next((f.language for f in self.finals if f.language), None) or self.language
        if rest := self.stable.rest(streamed):
            self.chunks += 1
            await self._send(TranscriptChunk(text=rest).event())
        await self._send(Transcript(text=text, language=language).event())
        await self._send(TranscriptStop().event())
        log.info("utterance: %.1f s of audio, model %s, transcript %.3f s after audio-stop, %d chunk(s)",
                 self.audio_seconds, self.stream.session.get("model"), time.monotonic() - stopped, self.chunks)
        log.debug("transcript: %s", text)
        return text

    async def close(self) -> None:
        """Drop the stream (the daemon closes its session when the connection ends)."""
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
        await self.stream.close()
