"""The openai-whisper (PyTorch) engine.

CTranslate2 directories are converted once to an openai-whisper checkpoint
(`convert.py`); `.pt` checkpoints load as they are.

openai-whisper's `transcribe()` returns only when the whole file is done and has
no per-segment hook, so `_Run.segments` below is its windowed loop (same
thresholds, fallback, prompt carrying and word-timestamp seeking), written as a
generator so each 30 s window's segments reach `on_segment` as soon as that window
is decoded. Left out: `clip_timestamps`, `hallucination_silence_threshold`,
`carry_initial_prompt` and console output, which whisperd never uses.
`Options.vad_filter` has no openai-whisper counterpart and is ignored here.

Audio under ~20 s may take the short path (`Options.short_path`, see
`short_path.py`): the encoder runs on a shorter mel with its positional
embedding sliced to match, and whisper's own `DecodingTask` decodes it
(`short.py`). What both engines share around the two decoders - the silence
early return, the guard (when it distrusts the short decode, the request takes
the windowed 30 s loop), the silence filter, the counters - is `common.py`.

`Options.logprobs` scores each window's text tokens in one teacher-forced decoder
pass on the audio features its decode already has (`logprobs.py`).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from whisperd.core.constants import (
    COMPRESSION_RATIO_THRESHOLD,
    HOP_LENGTH,
    LOGPROB_THRESHOLD,
    N_FRAMES,
    SAMPLE_RATE,
)
from whisperd.core.errors import EngineError, InvalidParameter
from whisperd.core.transcript import Segment, Transcript, Word
from whisperd.engines import common
from whisperd.engines.base import ModelInfo, Options, SegmentCallback
from whisperd.engines.common import FullDecode, ShortDecode
from whisperd.engines.openai import logprobs, short
from whisperd.engines.openai.load import load_checkpoint, resolve_compute_type, resolve_device

if TYPE_CHECKING:
    import torch
    from whisper.decoding import DecodingResult
    from whisper.model import Whisper
    from whisper.tokenizer import Tokenizer


# Sampling candidates per window when the temperature is above 0 (whisper's CLI default).
BEST_OF = 5


class OpenAIWhisperEngine:
    name = "openai-whisper"
    concurrency = 1  # one decode at a time, see the lock below

    def __init__(
        self,
        model: ModelInfo,
        *,
        device: str = "cpu",
        compute_type: str = "auto",
        cpu_threads: int = 0,
        cache_dir: str | Path | None = None,
    ) -> None:
        import torch

        if cpu_threads > 0:
            torch.set_num_threads(cpu_threads)
        self.model_info = model
        self.device = resolve_device(device)
        self.compute_type = resolve_compute_type(compute_type, self.device)
        self._whisper = load_checkpoint(model, self.device, Path(cache_dir) if cache_dir else None)
        # whisper's decoder installs kv-cache hooks on the shared model per call,
        # so two decodes must never overlap.
        self._lock = threading.Lock()
        self._counters = common.EngineCounters()

    def counters(self) -> dict[str, int]:
        return self._counters.snapshot()

    def transcribe(
        self,
        audio: np.ndarray,
        options: Options,
        on_segment: SegmentCallback | None = None,
    ) -> Transcript:
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise EngineError(f"audio must be mono (one dimension), got shape {audio.shape}")
        language = _model_language(options.language, self._whisper)
        fp16 = self.compute_type == "float16"

        def decode_short(audio: np.ndarray, options: Options, frames: int, cap: int) -> ShortDecode | str:
            with _engine_errors():
                return short.decode_short(self._whisper, audio, options, language, frames, cap, fp16=fp16)

        def decode_full(audio: np.ndarray, options: Options) -> FullDecode:
            with _engine_errors():
                run = _Run(self._whisper, audio, options, language, fp16=fp16)
            return FullDecode(run.language, _engine_errors_in(run.segments()))

        with self._lock:
            return common.transcribe(audio, options, on_segment, counters=self._counters,
                                     decode_short=decode_short, decode_full=decode_full)


@contextmanager
def _engine_errors() -> Iterator[None]:
    try:
        yield
    except (RuntimeError, ValueError) as e:  # torch/whisper failures, CUDA out of memory
        raise EngineError(f"openai-whisper failed: {e}") from e


def _engine_errors_in(segments: Iterator[Segment]) -> Iterator[Segment]:
    """The decoder's failures as EngineError, not the consumer's: the `yield` is outside."""
    while True:
        with _engine_errors():
            segment = next(segments, None)
        if segment is None:
            return
        yield segment


def _model_language(language: str | None, model: "Whisper") -> str | None:
    """The request's language as this model's tokenizer knows it; None: detect.

    Which languages a model may be asked for is the daemon's to check; this only
    maps onto the model (older multilingual ones know the first 99 languages only,
    "yue" came later), and an English-only model hears English.
    """
    from whisper.tokenizer import LANGUAGES

    if language is None:
        return None if model.is_multilingual else "en"
    code = language.strip().lower()
    if code not in list(LANGUAGES)[: model.num_languages]:
        raise InvalidParameter(f"unknown language {language!r} for this model", param="language")
    return code if model.is_multilingual else "en"


# --- the windowed decoding loop (after whisper.transcribe.transcribe) -----------------


class _Run:
    """One transcription: mel, language, tokenizer, then `segments()` window by window."""

    def __init__(
        self, model: "Whisper", audio: np.ndarray, options: Options, language: str | None, *, fp16: bool
    ) -> None:
        import torch
        from whisper.audio import N_SAMPLES, log_mel_spectrogram, pad_or_trim
        from whisper.tokenizer import get_tokenizer

        self.model, self.options = model, options
        self.dtype = torch.float16 if fp16 else torch.float32
        # Padded with 30 s of silence, as whisper does, so the last window slices whole.
        self.mel = log_mel_spectrogram(
            torch.from_numpy(audio), model.dims.n_mels, padding=N_SAMPLES, device=model.device
        )
        self.content_frames = self.mel.shape[-1] - N_FRAMES
        if language is None:  # detect from the first 30 s
            first = pad_or_trim(self.mel, N_FRAMES).to(self.dtype)
            with torch.no_grad():
                _, probs = model.detect_language(first)
            language = max(probs, key=probs.get)
        self.language: str = language
        self.tokenizer: "Tokenizer" = get_tokenizer(
            model.is_multilingual, num_languages=model.num_languages, language=language, task=options.task
        )
        beam = options.beam_size if options.beam_size > 1 else None  # None = greedy
        self.decode_kw: dict[str, Any] = dict(
            task=options.task, language=language, beam_size=beam, best_of=BEST_OF, fp16=fp16
        )

    def segments(self) -> Iterator[Segment]:
        from whisper.audio import FRAMES_PER_SECOND, pad_or_trim
        from whisper.timing import add_word_timestamps
        from whisper.utils import get_end

        model, opts, tokenizer = self.model, self.options, self.tokenizer
        input_stride = N_FRAMES // model.dims.n_audio_ctx  # mel frames per output token
        time_precision = input_stride * HOP_LENGTH / SAMPLE_RATE  # 0.02 s
        all_tokens: list[int] = []
        if opts.prompt:
            all_tokens.extend(tokenizer.encode(" " + opts.prompt.strip()))
        prompt_reset_since = 0
        last_speech_timestamp = 0.0
        next_id = 0
        seek = 0
        while seek < self.content_frames:
            time_offset = seek * HOP_LENGTH / SAMPLE_RATE
            segment_size = min(N_FRAMES, self.content_frames - seek)
            mel = self.mel[:, seek : seek + segment_size]
            mel = pad_or_trim(mel, N_FRAMES).to(model.device).to(self.dtype)
            prompt = all_tokens[prompt_reset_since:]
            result = self._decode_with_fallback(mel, prompt)

            if self._is_silence(result):
                seek += segment_size  # skip the whole window
                continue

            current, advance, single_ending = _split(
                result, tokenizer, seek, time_offset, segment_size, input_stride, time_precision
            )
            seek += advance
            if opts.word_timestamps:
                add_word_timestamps(
                    segments=current,
                    model=model,
                    tokenizer=tokenizer,
                    mel=mel,
                    num_frames=segment_size,
                    last_speech_timestamp=last_speech_timestamp,
                )
                last_word_end = get_end(current)
                if not single_ending and last_word_end is not None and last_word_end > time_offset:
                    # resume right after the last aligned word, not the last timestamp
                    seek = round(last_word_end * FRAMES_PER_SECOND)
                if last_word_end is not None:
                    last_speech_timestamp = last_word_end

            # An instantaneous or empty segment carries nothing (whisper blanks it).
            kept = [seg for seg in current if seg["start"] != seg["end"] and seg["text"].strip()]
            if opts.logprobs:
                self._add_logprobs(kept, result, prompt)
            for seg in kept:
                all_tokens.extend(seg["tokens"])
                yield _to_segment(next_id, seg)
                next_id += 1

            if result.temperature > 0.5:
                # hot sampling may have derailed: do not feed this text as the next prompt
                prompt_reset_since = len(all_tokens)

    def _decode_with_fallback(self, mel: "torch.Tensor", prompt: list[int]) -> "DecodingResult":
        from whisper.decoding import DecodingOptions

        result = None
        for t in self.options.temperatures():
            kw = {**self.decode_kw, "prompt": prompt}
            # whisper uses beams only when greedy, and best_of only when sampling
            if t > 0:
                kw.pop("beam_size")
            else:
                kw.pop("best_of")
            result = self.model.decode(mel, DecodingOptions(**kw, temperature=t))
            needs_fallback = (
                result.compression_ratio > COMPRESSION_RATIO_THRESHOLD
                or result.avg_logprob < LOGPROB_THRESHOLD
            )
            threshold = self.options.no_speech_threshold
            if (
                threshold is not None
                and result.no_speech_prob > threshold
                and result.avg_logprob < LOGPROB_THRESHOLD
            ):
                needs_fallback = False  # silence: hotter sampling would only invent words
            if not needs_fallback:
                break
        assert result is not None  # temperatures() is never empty
        return result

    def _add_logprobs(self, segments: list[dict[str, Any]], result: "DecodingResult", prompt: list[int]) -> None:
        """Each segment's text tokens scored in one pass over the window, in its decode's context."""
        eot = self.tokenizer.eot
        texts = [[t for t in seg["tokens"] if t < eot] for seg in segments]
        scored = logprobs.scored(self.model, self.tokenizer, result.audio_features, prompt,
                                 [t for text in texts for t in text])
        at = 0
        for seg, text in zip(segments, texts):
            seg["logprobs"] = scored[at : at + len(text)]
            at += len(text)

    def _is_silence(self, result: "DecodingResult") -> bool:
        threshold = self.options.no_speech_threshold
        return (
            threshold is not None
            and result.no_speech_prob > threshold
            and result.avg_logprob <= LOGPROB_THRESHOLD
        )


def _split(
    result: "DecodingResult",
    tokenizer: "Tokenizer",
    seek: int,
    time_offset: float,
    segment_size: int,
    input_stride: int,
    time_precision: float,
) -> tuple[list[dict[str, Any]], int, bool]:
    """One window's tokens → segment dicts, how far to seek, and whether it ended on silence."""
    import torch

    tokens = torch.tensor(result.tokens)
    is_ts = tokens.ge(tokenizer.timestamp_begin)
    single_ending = is_ts[-2:].tolist() == [False, True]
    consecutive = (torch.where(is_ts[:-1] & is_ts[1:])[0] + 1).tolist()

    def segment(start: float, end: float, toks: "torch.Tensor") -> dict[str, Any]:
        toks_list = toks.tolist()
        text = tokenizer.decode([t for t in toks_list if t < tokenizer.eot])
        return {
            "seek": seek, "start": start, "end": end, "text": text, "tokens": toks_list,
            "temperature": result.temperature, "avg_logprob": result.avg_logprob,
            "compression_ratio": result.compression_ratio,
            "no_speech_prob": result.no_speech_prob,
        }  # fmt: skip

    out: list[dict[str, Any]] = []
    if consecutive:
        # pairs of timestamp tokens close one segment and open the next
        slices = consecutive + ([len(tokens)] if single_ending else [])
        last = 0
        for cut in slices:
            piece = tokens[last:cut]
            start = (piece[0].item() - tokenizer.timestamp_begin) * time_precision
            end = (piece[-1].item() - tokenizer.timestamp_begin) * time_precision
            out.append(segment(time_offset + start, time_offset + end, piece))
            last = cut
        if single_ending:
            advance = segment_size  # nothing spoken after the last timestamp
        else:
            # the last segment is unfinished: decode again from its start
            advance = (tokens[last - 1].item() - tokenizer.timestamp_begin) * input_stride
        return out, advance, single_ending

    duration = segment_size * HOP_LENGTH / SAMPLE_RATE
    stamps = tokens[is_ts.nonzero().flatten()]
    if len(stamps) > 0 and stamps[-1].item() != tokenizer.timestamp_begin:
        duration = (stamps[-1].item() - tokenizer.timestamp_begin) * time_precision
    out.append(segment(time_offset, time_offset + duration, tokens))
    return out, segment_size, single_ending


def _to_segment(seg_id: int, d: dict[str, Any]) -> Segment:
    words = tuple(
        Word(str(w["word"]), float(w["start"]), float(w["end"]), float(w["probability"]))
        for w in d.get("words") or ()
    )
    return Segment(
        id=seg_id,
        seek=int(d["seek"]),
        start=float(d["start"]),
        end=float(d["end"]),
        text=d["text"],
        tokens=tuple(int(t) for t in d["tokens"]),
        temperature=float(d["temperature"]),
        avg_logprob=float(d["avg_logprob"]),
        compression_ratio=float(d["compression_ratio"]),
        no_speech_prob=float(d["no_speech_prob"]),
        words=words,
        logprobs=d.get("logprobs", ()),
    )
