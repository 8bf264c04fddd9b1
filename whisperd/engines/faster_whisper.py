"""faster-whisper (CTranslate2) engine: reads CTranslate2 model directories as they are.

Audio under ~20 s may take the short path (`Options.short_path`, see
`short_path.py`): features padded only to a context sized from the audio,
CTranslate2's `encode` and `generate` called directly (no timestamps, a token
cap). Around the two decoders, `common.py` does what both engines share: the
silence early return, the guard (when it distrusts the short decode, the
request goes to faster-whisper's ordinary 30 s `transcribe()`), the silence
filter and the counters.

`Options.logprobs` (include[]=logprobs) is a teacher-forced pass on CTranslate2's
`align`, after the decode and apart from it (`logprobs.py` says what is measured
and why), on the encoder output the decode made (`_EncoderTap`).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
from typing import Iterator, Sequence

import numpy as np

from whisperd.core.constants import COMPRESSION_RATIO_THRESHOLD, HOP_LENGTH, LOGPROB_THRESHOLD, N_FRAMES
from whisperd.core.errors import EngineError
from whisperd.core.transcript import Segment, TokenLogprob, Transcript, Word
from whisperd.engines import common, fallback, logprobs, short_path
from whisperd.engines.base import ModelInfo, Options, SegmentCallback

log = logging.getLogger(__name__)


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def pick_compute_type(compute_type: str, device: str) -> str:
    # int8 on CPU: measured faster with the same words (docs/performance.md);
    # float16 on CUDA, the precision GPU Whisper is trained and served at.
    if compute_type != "auto":
        return compute_type
    return "float16" if device == "cuda" else "int8"


class FasterWhisperEngine:
    name = "faster-whisper"

    def __init__(
        self,
        model: ModelInfo,
        *,
        device: str = "auto",
        compute_type: str = "auto",
        cpu_threads: int = 0,
        workers: int = 1,
    ) -> None:
        if model.kind != "ctranslate2":
            raise EngineError(f"faster-whisper needs a CTranslate2 model; {model.name} is {model.kind}")
        from faster_whisper import WhisperModel

        self.model_info = model
        self.device = pick_device(device)
        self.compute_type = pick_compute_type(compute_type, self.device)
        self.cpu_threads = cpu_threads or (os.cpu_count() or 1)
        # Requests decoded at once: CTranslate2 runs `workers` replicas that share
        # one copy of the weights, each on `cpu_threads` threads.
        self.concurrency = max(1, workers)
        try:
            self._model = WhisperModel(
                str(model.path),
                device=self.device,
                compute_type=self.compute_type,
                cpu_threads=self.cpu_threads,
                num_workers=self.concurrency,
                local_files_only=True,
            )
        except ValueError as exc:  # e.g. a compute type this device cannot do
            raise EngineError(f"cannot load {model.name} with faster-whisper: {exc}") from None
        self._counters = common.EngineCounters()
        # Whisper's temperature fallback, minus the re-decodes of speech that truly repeats.
        self._model.generate_with_fallback = fallback.agreeing_fallback(  # type: ignore[method-assign]
            self._model.generate_with_fallback, self._counters.add)

    def counters(self) -> dict[str, int]:
        return self._counters.snapshot()

    def transcribe(
        self,
        audio: np.ndarray,
        options: Options,
        on_segment: SegmentCallback | None = None,
    ) -> Transcript:
        # faster-whisper's VAD runs inside its own 30 s loop only.
        return common.transcribe(audio, options, on_segment, counters=self._counters,
                                 decode_short=None if options.vad_filter else self._decode_short,
                                 decode_full=self._decode_full)

    def _language(self, options: Options) -> str | None:
        # An English-only model hears English (the daemon refuses other languages for it).
        return "en" if self.model_info.english_only else options.language

    def _decode_full(self, audio: np.ndarray, options: Options) -> common.FullDecode:
        language = self._language(options)
        tap = _EncoderTap(self._model) if options.logprobs else None
        segments, info = (tap.model if tap else self._model).transcribe(
            audio,
            language=language,
            task=options.task,
            beam_size=options.beam_size,
            temperature=list(options.temperatures()),
            compression_ratio_threshold=COMPRESSION_RATIO_THRESHOLD,
            log_prob_threshold=LOGPROB_THRESHOLD,
            initial_prompt=options.prompt,
            word_timestamps=options.word_timestamps,
            no_speech_threshold=options.no_speech_threshold,
            vad_filter=options.vad_filter,
        )
        decoded = (_segment(s) for s in segments)
        if tap is not None:
            decoded = self._with_logprobs(decoded, tap, options, info.language or (language or "en"))
        return common.FullDecode(info.language or (language or "en"), decoded)

    def _decode_short(self, audio: np.ndarray, options: Options, frames: int, cap: int) -> common.ShortDecode | str:
        """One greedy (or beam) decode on a `frames`-long context: CTranslate2 called directly."""
        import ctranslate2
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        wm = self._model
        padded = np.zeros(frames * HOP_LENGTH, dtype=np.float32)
        padded[: len(audio)] = audio
        features = wm.feature_extractor(padded, padding=0)[:, :frames]
        features = ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None]))
        encoded = wm.model.encode(features, to_cpu=False)
        language = self._language(options)
        if language is None:  # a multilingual model, asked to detect
            token, probability = wm.model.detect_language(encoded)[0][0]
            if probability < short_path.LANGUAGE_SURE:
                # not "short path ...": common.py logs one such record per fallback
                log.debug("language unsure on a short context: %s %.2f", token, probability)
                return "language unsure"
            language = token[2:-2]  # "<|en|>" → "en"
        tokenizer = Tokenizer(wm.hf_tokenizer, wm.model.is_multilingual, task=options.task, language=language)
        prompt: list[int] = []
        if options.prompt:
            prompt = [tokenizer.sot_prev, *tokenizer.encode(" " + options.prompt.strip())[-(wm.max_length // 2 - 1):]]
        prompt += [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        if len(prompt) + cap > wm.max_length:
            return "prompt too long"
        result = wm.model.generate(
            encoded,
            [prompt],
            beam_size=max(1, options.beam_size),
            max_length=len(prompt) + cap,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=list(get_suppressed_tokens(tokenizer, [-1])),
        )[0]
        tokens = list(result.sequences_ids[0])
        # CTranslate2 scores are length-normalised sums; whisper averages over tokens + 1.
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        scored: tuple[TokenLogprob, ...] = ()
        if options.logprobs:
            # The decode's own context: `prompt` less its no_timestamps, which align adds itself.
            scored = self._scored(encoded, prompt[:-1], [], tokens, frames)
        return common.ShortDecode(tokens, tokenizer.decode(tokens), avg_logprob, result.no_speech_prob, language,
                                  scored)

    # --- include[]=logprobs -------------------------------------------------------------

    def _scored(self, encoded, start: list[int], before: Sequence[int], text: Sequence[int],
                frames: int) -> tuple[TokenLogprob, ...]:
        """`text`'s tokens with their log probabilities, after `before` in the same window."""
        if not text:
            return ()
        wm = self._model
        result = wm.model.align(encoded, start, [[*before, *text]], frames)[0]
        probs = result.text_token_probs[len(before):]
        return logprobs.token_logprobs(text, [math.log(max(p, 1e-45)) for p in probs], self._token_bytes)

    def _token_bytes(self, token: int) -> bytes:
        return logprobs.bpe_bytes(self._model.hf_tokenizer.id_to_token(token))

    def _with_logprobs(self, segments: Iterator[Segment], tap: "_EncoderTap", options: Options,
                       language: str) -> Iterator[Segment]:
        """`segments` as faster-whisper decoded them, each with its text tokens' logprobs.

        Scored on their window's encoder output, in the context its decode had: the
        prompt and the earlier windows' tokens, reset after a window sampled hotter
        than 0.5, as faster-whisper does. A segment is scored as it arrives, after the
        text of its window's earlier segments, so streaming is not held back to the
        window's end (a window's later segments are scored again with its earlier ones:
        a few short decoder passes, no encoder pass).
        """
        from faster_whisper.tokenizer import Tokenizer

        wm = self._model
        tokenizer = Tokenizer(wm.hf_tokenizer, wm.model.is_multilingual, task=options.task, language=language)
        previous: list[int] = tokenizer.encode(" " + options.prompt.strip()) if options.prompt else []
        reset_since = 0
        seek, encoded, window_previous, before = None, None, [], []
        for seg in segments:
            if seg.seek != seek:
                # faster-whisper yields a window's segments right after encoding and decoding it.
                seek, encoded, window_previous, before = seg.seek, tap.last, previous[reset_since:], []
            text = [t for t in seg.tokens if t < tokenizer.eot]
            start = logprobs.start_sequence(window_previous, tokenizer.sot_prev, tokenizer.sot_sequence,
                                            n_text=len(before) + len(text), max_length=wm.max_length)
            yield dataclasses.replace(seg, logprobs=self._scored(encoded, start, before, text, N_FRAMES))
            before += text
            previous.extend(seg.tokens)
            if seg.temperature > 0.5:  # faster-whisper's prompt_reset_on_temperature
                reset_since = len(previous)


class _EncoderTap:
    """This request's view of the model, keeping the encoder output of the window being decoded.

    faster-whisper encodes each 30 s window through `WhisperModel.encode` and keeps the
    result to itself; scoring a window's tokens needs it, and encoding again would cost
    as much as the encoder pass itself (most of a tiny model's time per window). A
    shallow copy per request, so concurrent slots each see their own.
    """

    def __init__(self, model) -> None:  # a faster_whisper.WhisperModel
        self.last = None
        self.model = copy.copy(model)
        encode = model.encode

        def tapped(features):
            self.last = encode(features)
            return self.last

        self.model.encode = tapped


def _segment(s) -> Segment:  # a faster_whisper.transcribe.Segment
    return Segment(
        id=s.id,
        seek=int(s.seek),
        start=float(s.start),
        end=float(s.end),
        text=s.text,
        tokens=tuple(int(t) for t in s.tokens),
        temperature=float(s.temperature or 0.0),
        avg_logprob=float(s.avg_logprob),
        compression_ratio=float(s.compression_ratio),
        no_speech_prob=float(s.no_speech_prob),
        words=tuple(Word(w.word, float(w.start), float(w.end), float(w.probability)) for w in (s.words or ())),
    )
