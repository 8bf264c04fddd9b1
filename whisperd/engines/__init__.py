"""Speech engines behind one small interface (`base.Engine`).

Engines know nothing of sockets, queues or scheduling. Heavy imports (torch,
whisper, ctranslate2) happen inside the engine modules, only when one is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from whisperd.engines.base import Engine, ModelInfo


def resolve_engine_name(engine: str, model: "ModelInfo") -> str:
    """`auto` picks by the model's kind: CTranslate2 directories → faster-whisper."""
    if engine != "auto":
        return engine
    return "faster-whisper" if model.kind == "ctranslate2" else "openai-whisper"


def resolve_device(engine: str, device: str) -> str:
    """`auto` → the device this engine would run on here (the hot worker's layout depends on it).

    faster-whisper asks CTranslate2 for a CUDA device; openai-whisper resolves its own
    `auto` when it loads, and the layout treats it the same either way (one slot).
    """
    if device != "auto" or engine != "faster-whisper":
        return device
    from whisperd.engines.faster_whisper import pick_device

    return pick_device(device)


def _faster_whisper(model: "ModelInfo", **kw: Any) -> "Engine":
    from whisperd.engines.faster_whisper import FasterWhisperEngine

    kw.pop("cache_dir")  # reads CTranslate2 directories as they are
    return FasterWhisperEngine(model, **kw)


def _openai_whisper(model: "ModelInfo", **kw: Any) -> "Engine":
    from whisperd.engines.openai.engine import OpenAIWhisperEngine

    kw.pop("workers")  # one decode at a time
    return OpenAIWhisperEngine(model, **kw)


def _null(model: "ModelInfo", **kw: Any) -> "Engine":
    from whisperd.engines.null import NullEngine

    return NullEngine(model)  # bench/test engine: no model, answers instantly


_LOADERS: dict[str, Callable[..., "Engine"]] = {
    "faster-whisper": _faster_whisper,
    "openai-whisper": _openai_whisper,
    "null": _null,
}


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
    loader = _LOADERS.get(resolve_engine_name(engine, model))
    if loader is None:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(['auto', *_LOADERS])}")
    return loader(model, device=device, compute_type=compute_type, cpu_threads=cpu_threads, workers=workers,
                  cache_dir=cache_dir)
