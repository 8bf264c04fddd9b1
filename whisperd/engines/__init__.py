"""Speech engines behind one small interface (`base.Engine`).

Engines know nothing of sockets, queues or scheduling. Heavy imports (torch,
whisper, ctranslate2) happen inside the engine modules, only when one is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from whisperd.engines.base import Engine, ModelInfo

ENGINE_NAMES = ("auto", "faster-whisper", "openai-whisper")  # and "null", for benchmarks only


def resolve_engine_name(engine: str, model: "ModelInfo") -> str:
    """`auto` picks by the model's kind: CTranslate2 directories → faster-whisper."""
    if engine != "auto":
        return engine
    return "faster-whisper" if model.kind == "ctranslate2" else "openai-whisper"


def load_engine(
    engine: str,
    model: "ModelInfo",
    *,
    device: str = "cpu",
    compute_type: str = "auto",
    cpu_threads: int = 0,
    workers: int = 1,
    cache_dir: str | None = None,
) -> "Engine":
    """`workers`: requests the engine may decode at once (faster-whisper only;
    `cpu_threads` is then per worker)."""
    name = resolve_engine_name(engine, model)
    if name == "faster-whisper":
        from whisperd.engines.faster_whisper import FasterWhisperEngine

        return FasterWhisperEngine(
            model, device=device, compute_type=compute_type, cpu_threads=cpu_threads, workers=workers
        )
    if name == "openai-whisper":
        from whisperd.engines.openai.engine import OpenAIWhisperEngine

        return OpenAIWhisperEngine(
            model,
            device=device,
            compute_type=compute_type,
            cpu_threads=cpu_threads,
            cache_dir=cache_dir,
        )
    if name == "null":  # bench/test engine: no model, answers instantly
        from whisperd.engines.null import NullEngine

        return NullEngine(model)
    raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINE_NAMES)}")
