"""One live session: audio arrives over time, words go back while the person speaks.

The session's audio is cut into utterances - by the server VAD (Silero; a turn ends
after `silence_duration_ms` of quiet) or by the client's `commit`. While an
utterance grows it is decoded again every `partial_interval_s` of new audio
(greedy, on whatever lane is free first: live work goes before file windows),
and each hypothesis is passed through LocalAgreement-2 (`whisperd.core.agreement`):
a `partial` carries the text so far and how much of it will never change. When
the utterance ends, one decode with the request's full settings gives its `final`,
which starts with every word already sent as stable.

Whisper hears at most 30 s at once: an utterance that runs past `max_piece_s` is
cut at its longest pause, the piece before the cut decoded for good (its words
become stable), and the rest carries on as the same utterance.

Memory is bounded: an utterance holds at most `max_piece_s` of samples, and
between utterances only the pre-roll (`prefix_padding_ms`) is kept.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import numpy as np

from whisperd.core.agreement import Agreement
from whisperd.core.chunking import DEFAULT_SILENCE_DURATION_MS
from whisperd.core.constants import SAMPLE_RATE
from whisperd.core.errors import JobCancelled, WhisperdError
from whisperd.core.live import LIVE_VAD, StreamSettings
from whisperd.core.transcript import Transcript
from whisperd.daemon.live_audio import PcmConverter
from whisperd.daemon.turns import FRAME, FRAME_MS, TurnDetector
from whisperd.daemon.windows import EARLIEST_CUT, SpeechDetector, choose_cut

log = logging.getLogger("whisperd.live")

# decode(samples, final, prompt) -> transcript; a partial's job may be cancelled by setting
# the flag the returned awaitable's job carries - the session only drops its result.
Decode = Callable[[np.ndarray, bool, "str | None"], Awaitable[Transcript]]
Send = Callable[..., None]  # send(kind, **fields)

MIN_PARTIAL_S = 0.3  # less speech than this says nothing worth showing
END_PADDING_S = 0.2  # audio kept after the last speech frame of a turn (Whisper hears the word's end)


@dataclass
class Utterance:
    index: int
    start: int  # stream sample where its audio begins
    agreement: Agreement = field(default_factory=Agreement)
    done_words: list[str] = field(default_factory=list)  # pieces decoded for good
    speech: bool = False  # a frame of it was speech
    speech_at: int = 0  # stream sample of its first speech frame (when `speech`)
    decoded_to: int = 0  # samples of the current piece the last partial heard
    language: str | None = None

    def stable_text(self) -> str:
        return " ".join([*self.done_words, *self.agreement.stable])

    def text(self) -> str:
        return " ".join([*self.done_words, *self.agreement.stable, *self.agreement.unstable])


@dataclass
class LiveStats:
    utterances: int = 0
    partials: int = 0


class LiveSession:
    def __init__(self, settings: StreamSettings, decode: Decode, send: Send, detector: SpeechDetector, *,
                 prompt: str | None = None, partial_interval_s: float = 0.5, max_piece_s: float = 28.0,
                 load: Callable[[], float] = lambda: 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.vad = settings.vad
        self._decode = decode
        self._send = send
        self._detector = detector
        self._prompt = prompt
        self._clock = clock
        self.partial_interval = int(partial_interval_s * SAMPLE_RATE)
        # How many sessions share each hot slot now: partials come that much less often, so a
        # final (which someone waits for) rarely finds every slot busy with a partial.
        self._load = load
        self.max_piece = int(max_piece_s * SAMPLE_RATE)
        vad = self.vad or LIVE_VAD
        self.threshold = vad.threshold
        self.prefix = int(vad.prefix_padding_ms * SAMPLE_RATE / 1000)
        self.turns = TurnDetector.for_vad(vad)
        self.converter = PcmConverter(settings.encoding, settings.sample_rate)
        # The audio not yet ended: the current utterance's piece, or the pre-roll between them.
        self.audio = np.zeros(0, np.float32)
        self.origin = 0  # stream sample of audio[0]
        self.prob = np.zeros(0, np.float32)  # per frame of `audio` (frames from `origin`, whole ones)
        self._vad_tail = np.zeros(0, np.float32)  # samples not yet in a whole frame
        self._last_frame = np.zeros(FRAME, np.float32)  # context for the next frame's probability
        self.samples = 0  # samples of the stream so far
        self.utterance: Utterance | None = None
        self._partial: asyncio.Task | None = None
        self.stats = LiveStats()

    # --- input -----------------------------------------------------------------------

    async def audio_chunk(self, data: bytes) -> None:
        await self._take(self.converter.feed(data))

    async def commit(self) -> None:
        """The client says the utterance is over (or there is none: an empty final). The
        resampler is not flushed: its few samples of delay join the next utterance."""
        if self.utterance is None:
            self._open(self.samples)
        await self._finish(self.samples)

    def clear(self) -> None:
        """Drop the audio not yet ended; no final for it."""
        self._cancel_partial()
        if self.utterance is not None and self.vad is not None and self.turns.in_speech:
            self._send("speech_stopped", utterance=self.utterance.index, audio_ms=self._ms(self.samples))
        self.utterance = None
        self.turns.reset()
        self._trim_to(self.samples)

    async def end(self) -> None:
        """The stream is over: whatever speech is still open gets its final."""
        await self._take(self.converter.flush())
        if self.utterance is not None and self.utterance.speech:
            await self._finish(self.samples)
        self._cancel_partial()

    def close(self) -> None:
        self._cancel_partial()

    # --- the audio -------------------------------------------------------------------

    async def _take(self, pcm: np.ndarray) -> None:
        if len(pcm) == 0:
            return
        start = self.samples
        self.samples += len(pcm)
        self.audio = np.concatenate([self.audio, pcm])
        if self.vad is None and self.utterance is None:
            self._open(start)
        for kind, frame in self._detect(pcm):
            at = frame * FRAME
            if kind == "start" and self.utterance is None:
                self._open(max(self.origin, at - self.prefix))
                self._send("speech_started", utterance=self.utterance.index, audio_ms=self._ms(self.utterance.start))
            elif kind == "stop" and self.utterance is not None:
                end = min(self.samples, at + int(END_PADDING_S * SAMPLE_RATE))
                self._send("speech_stopped", utterance=self.utterance.index, audio_ms=self._ms(end))
                await self._finish(end)
        if self.utterance is None:
            self._trim_to(max(self.origin, self.samples - self.prefix - FRAME))
            return
        if len(self.audio) >= self.max_piece:
            await self._cut_piece()
        self._maybe_partial()

    def _detect(self, pcm: np.ndarray) -> list[tuple[str, int]]:
        """Probabilities for the new whole frames; the turns they make (server VAD only)."""
        data = np.concatenate([self._vad_tail, pcm])
        whole = len(data) - len(data) % FRAME
        self._vad_tail = data[whole:]
        if whole == 0:
            return []
        frames = data[:whole]
        prob = self._detector.probabilities(np.concatenate([self._last_frame, frames]))[1:]
        self._last_frame = frames[-FRAME:].copy()
        first = self.samples - len(self._vad_tail) - whole  # stream sample of the first new frame
        self.prob = np.concatenate([self.prob, prob.astype(np.float32)])
        self._note_speech(prob, first)
        if self.vad is None:
            return []
        return self.turns.feed(prob.tolist())

    def _ms(self, sample: int) -> int:
        return int(sample * 1000 / SAMPLE_RATE)

    def _trim_to(self, sample: int) -> None:
        """Forget the audio before stream sample `sample` (kept frame-aligned with `prob`)."""
        sample = self.origin + ((sample - self.origin) // FRAME) * FRAME
        if sample <= self.origin:
            return
        drop = sample - self.origin
        self.audio = self.audio[drop:].copy()
        self.prob = self.prob[drop // FRAME:].copy()
        self.origin = sample

    def _open(self, start: int) -> None:
        self._trim_to(start)
        self.utterance = Utterance(self.stats.utterances, self.origin)
        self.stats.utterances += 1
        self._note_speech(self.prob, self.origin)  # the pre-roll it starts with may hold speech

    def _note_speech(self, prob: np.ndarray, first: int) -> None:
        """Mark the open utterance as holding speech at its first frame of `prob` (which starts at
        stream sample `first`) that reaches the threshold."""
        u = self.utterance
        loud = np.flatnonzero(prob >= self.threshold)
        if u is not None and not u.speech and len(loud):
            u.speech, u.speech_at = True, first + int(loud[0]) * FRAME

    # --- decoding ----------------------------------------------------------------------

    def _maybe_partial(self) -> None:
        u = self.utterance
        if u is None or not self.settings.partials or not u.speech or self._partial is not None:
            return
        heard = len(self.audio)
        if self.samples - u.speech_at < MIN_PARTIAL_S * SAMPLE_RATE:
            return  # too little speech to say anything yet
        if u.decoded_to and heard - u.decoded_to < self.partial_interval * max(1.0, self._load()):
            return
        u.decoded_to = heard
        self._partial = asyncio.ensure_future(self._run_partial(u, self.audio.copy()))

    async def _run_partial(self, u: Utterance, pcm: np.ndarray) -> None:
        try:
            transcript = await self._decode(pcm, False, self._piece_prompt(u))
        except (JobCancelled, asyncio.CancelledError):
            return
        except WhisperdError as err:
            log.info("live partial failed: %s (%s)", err.message, err.code)
            return
        finally:
            if self._partial is asyncio.current_task():
                self._partial = None
        if self.utterance is not u:
            return  # the utterance ended meanwhile: its final says it all
        before = (u.stable_text(), u.text())
        u.agreement.update(transcript.text, len(pcm) / SAMPLE_RATE)
        u.language = u.language or transcript.language
        if (u.stable_text(), u.text()) != before and u.text():
            self.stats.partials += 1
            self._send("partial", utterance=u.index, text=u.text(), stable=len(u.stable_text()))
        self._maybe_partial()  # audio came in while it ran

    def _cancel_partial(self) -> None:
        if self._partial is not None:
            self._partial.cancel()
            self._partial = None

    def _piece_prompt(self, u: Utterance) -> str | None:
        if u.done_words:
            return " ".join(u.done_words[-40:])  # the piece before: Whisper carries on from its words
        return self._prompt

    async def _cut_piece(self) -> None:
        """The utterance outgrew Whisper's 30 s: decode up to its longest pause for good."""
        u = self.utterance
        assert u is not None
        n = len(self.prob)
        # The long-file rule, with the windows' default pause: a turn that ran this long had none
        # as long as the VAD's silence_duration_ms.
        cut = choose_cut(self.prob, threshold=self.threshold, lo=int(n * EARLIEST_CUT), hi=n - 1,
                         min_pause=max(1, DEFAULT_SILENCE_DURATION_MS // FRAME_MS), padding=self.prefix // FRAME)
        cut = max(1, cut)
        cut_sample = self.origin + cut * FRAME
        self._cancel_partial()
        head = self.audio[: cut * FRAME].copy()
        transcript = await self._decode(head, True, self._piece_prompt(u))
        u.done_words = [*u.done_words, *u.agreement.final(transcript.text).split()]
        u.language = u.language or transcript.language
        u.agreement = Agreement()
        u.decoded_to = 0
        self._trim_to(cut_sample)
        self._send("partial", utterance=u.index, text=u.text(), stable=len(u.stable_text()))

    async def _finish(self, end: int) -> None:
        """The utterance ends at stream sample `end`: its final, then the audio after it stays."""
        u = self.utterance
        assert u is not None
        self._cancel_partial()
        ended = self._clock()
        piece = self.audio[: max(0, end - self.origin)].copy()
        piece_start = self.origin
        self.utterance = None
        text = decoded = u.stable_text()
        if u.speech and len(piece):
            try:
                transcript = await self._decode(piece, True, self._piece_prompt(u))
            except JobCancelled:
                return
            text = " ".join([*u.done_words, *u.agreement.final(transcript.text).split()])
            decoded = " ".join([*u.done_words, *transcript.text.split()])
            u.language = u.language or transcript.language
        took = self._clock() - ended
        self._send("final", utterance=u.index, text=text, decoded=decoded, start=round(u.start / SAMPLE_RATE, 3),
                   end=round(end / SAMPLE_RATE, 3), language=u.language, processing_seconds=round(took, 4),
                   audio_seconds=round((end - piece_start) / SAMPLE_RATE, 3))
        self._trim_to(end)
