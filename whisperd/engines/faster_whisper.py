"""faster-whisper (CTranslate2) engine: reads CTranslate2 model directories as they are."""

from __future__ import annotations

import os

import numpy as np

from whisperd.engines.base import (
    SAMPLE_RATE,
    Options,
    Segment,
    SegmentCallback,
    Transcript,
    Word,
    join_segment_text,
)
from whisperd.errors import EngineError, UnsupportedForModel
from whisperd.models import ModelInfo
from whisperd.silence import is_digital_silence, is_silence_segment


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
    ) -> None:
        if model.kind != "ctranslate2":
            raise EngineError(f"faster-whisper needs a CTranslate2 model; {model.name} is {model.kind}")
        from faster_whisper import WhisperModel

        self.model_info = model
        self.device = pick_device(device)
        self.compute_type = pick_compute_type(compute_type, self.device)
        self.cpu_threads = cpu_threads or (os.cpu_count() or 1)
        try:
            self._model = WhisperModel(
                str(model.path),
                device=self.device,
                compute_type=self.compute_type,
                cpu_threads=self.cpu_threads,
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
        temperatures = options.temperatures()
        segments_iter, info = self._model.transcribe(
            audio,
            language=language,
            task=options.task,
            beam_size=options.beam_size,
            temperature=list(temperatures),
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
