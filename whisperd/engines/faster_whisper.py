"""faster-whisper (CTranslate2) engine: reads CTranslate2 model directories as they are.

Audio under ~20 s may take the short path (`Options.short_path`, see
`short_path.py`): features padded only to a context sized from the audio,
CTranslate2's `encode` and `generate` called directly (no timestamps, a token
cap), one segment covering the audio. When the guard distrusts the result,
the request is decoded again by faster-whisper's ordinary 30 s `transcribe()`.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from whisperd.core.constants import COMPRESSION_RATIO_THRESHOLD, HOP_LENGTH, LOGPROB_THRESHOLD, SAMPLE_RATE
from whisperd.core.errors import EngineError, UnsupportedForModel
from whisperd.core.transcript import Segment, Transcript, Word, join_segment_text
from whisperd.engines import short_path
from whisperd.engines.base import ModelInfo, Options, SegmentCallback
from whisperd.engines.silence import is_digital_silence, is_silence_segment

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

    def transcribe(
        self,
        audio: np.ndarray,
        options: Options,
        on_segment: SegmentCallback | None = None,
    ) -> Transcript:
        language = options.language
        if self.model_info.english_only:
            if options.task == "translate" or (language not in (None, "en")):
                raise UnsupportedForModel(
                    f"model {self.model_info.name} is English-only: it cannot "
                    + ("translate" if options.task == "translate" else f"transcribe language {language!r}"),
                    param="language" if options.task != "translate" else "model",
                )
            language = "en"
        if is_digital_silence(audio):
            return Transcript("", language or "en", len(audio) / SAMPLE_RATE, (), options.task)
        frames = short_path.usable(enabled=options.short_path, word_timestamps=options.word_timestamps,
                                   temperature=options.temperature, n_samples=len(audio))
        if frames is not None and not options.vad_filter:
            short = self._transcribe_short(audio, options, language, frames)
            if short is not None:
                if on_segment is not None:
                    for seg in short.segments:
                        on_segment(seg)
                return short
        return self._transcribe_full(audio, options, language, on_segment)

    def _transcribe_full(
        self, audio: np.ndarray, options: Options, language: str | None, on_segment: SegmentCallback | None
    ) -> Transcript:
        temperatures = options.temperatures()
        segments_iter, info = self._model.transcribe(
            audio,
            language=language,
            task=options.task,
            beam_size=options.beam_size,
            temperature=list(temperatures),
            compression_ratio_threshold=COMPRESSION_RATIO_THRESHOLD,
            log_prob_threshold=LOGPROB_THRESHOLD,
            initial_prompt=options.prompt,
            word_timestamps=options.word_timestamps,
            no_speech_threshold=options.no_speech_threshold,
            vad_filter=options.vad_filter,
        )
        segments: list[Segment] = []
        duration = len(audio) / SAMPLE_RATE
        # The segments are a lazy generator: decoding happens here, one segment at a time.
        for s in segments_iter:
            if is_silence_segment(s.text, s.no_speech_prob, s.avg_logprob, options.no_speech_threshold):
                continue
            seg = Segment(
                id=len(segments),
                seek=int(s.seek),
                start=min(float(s.start), duration),
                end=min(float(s.end), duration),  # the last window's end can pass the audio's
                text=s.text,
                tokens=tuple(int(t) for t in s.tokens),
                temperature=float(s.temperature or 0.0),
                avg_logprob=float(s.avg_logprob),
                compression_ratio=float(s.compression_ratio),
                no_speech_prob=float(s.no_speech_prob),
                words=tuple(
                    Word(w.word, float(w.start), float(w.end), float(w.probability))
                    for w in (s.words or ())
                ),
            )
            segments.append(seg)
            if on_segment is not None:
                on_segment(seg)
        return Transcript(
            text=join_segment_text(segments),
            language=info.language or (language or "en"),
            duration=len(audio) / SAMPLE_RATE,
            segments=tuple(segments),
            task=options.task,
        )

    def _transcribe_short(
        self, audio: np.ndarray, options: Options, language: str | None, frames: int
    ) -> Transcript | None:
        """One greedy (or beam) decode on a `frames`-long context; None when the guard trips."""
        import ctranslate2
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        wm = self._model
        duration = len(audio) / SAMPLE_RATE
        padded = np.zeros(frames * HOP_LENGTH, dtype=np.float32)
        padded[: len(audio)] = audio
        features = wm.feature_extractor(padded, padding=0)[:, :frames]
        features = ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None]))
        encoded = wm.model.encode(features, to_cpu=False)
        if language is None:
            if not wm.model.is_multilingual:
                language = "en"
            else:
                ranked = wm.model.detect_language(encoded)[0]
                token, probability = ranked[0]
                if probability < 0.5:  # unsure on a short context: let the 30 s path decide
                    log.debug("short path: language unsure (%s %.2f); 30 s path", token, probability)
                    return None
                language = token[2:-2]  # "<|en|>" → "en"
        tokenizer = Tokenizer(wm.hf_tokenizer, wm.model.is_multilingual, task=options.task, language=language)
        prompt: list[int] = []
        if options.prompt:
            prompt = [tokenizer.sot_prev, *tokenizer.encode(" " + options.prompt.strip())[-(wm.max_length // 2 - 1):]]
        prompt += [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        cap = short_path.token_cap(duration)
        if len(prompt) + cap > wm.max_length:
            return None
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
        text = tokenizer.decode(tokens)
        reason = short_path.fallback_reason(tokens, text, avg_logprob, cap,
                                            result.no_speech_prob, options.no_speech_threshold)
        if reason is not None:
            log.debug("short path distrusted (%s): %r; 30 s path", reason, text)
            return None
        segment = Segment(
            id=0,
            seek=0,
            start=0.0,
            end=duration,
            text=text,
            tokens=tuple(int(t) for t in tokens),
            temperature=0.0,
            avg_logprob=float(avg_logprob),
            compression_ratio=short_path.compression_ratio(text.strip()),
            no_speech_prob=float(result.no_speech_prob),
        )
        segments: tuple[Segment, ...] = (segment,)
        if is_silence_segment(text, segment.no_speech_prob, segment.avg_logprob, options.no_speech_threshold):
            segments = ()
        return Transcript(
            text=join_segment_text(segments),
            language=language,
            duration=duration,
            segments=segments,
            task=options.task,
        )
