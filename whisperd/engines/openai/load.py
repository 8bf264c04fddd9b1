"""Loading the openai-whisper engine's model: device, precision, checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from whisperd.core.errors import ConfigError, EngineError

if TYPE_CHECKING:
    from whisper.model import Whisper

    from whisperd.engines.base import ModelInfo

log = logging.getLogger("whisperd.engines.openai")

COMPUTE_TYPES = ("auto", "default", "float32", "float16")


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but torch sees no CUDA device")
    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError(f"openai-whisper runs on cpu or cuda, not {device!r}")
    return device


def resolve_compute_type(compute_type: str, device: str) -> str:
    if compute_type not in COMPUTE_TYPES:
        raise ConfigError(
            f"openai-whisper computes in {', '.join(COMPUTE_TYPES)}, not {compute_type!r}"
        )
    on_gpu = device.startswith("cuda")
    if compute_type in ("auto", "default"):
        return "float16" if on_gpu else "float32"
    if compute_type == "float16" and not on_gpu:
        # As whisper itself does: CPU kernels have no fast float16 path.
        log.warning("float16 is not supported on cpu; using float32")
        return "float32"
    return compute_type


def load_checkpoint(model: "ModelInfo", device: str, cache_dir: Path | None) -> "Whisper":
    from whisperd.engines.openai import convert

    if model.kind == "ctranslate2":
        if cache_dir is None:  # nowhere to keep it: convert in memory each start
            return convert.load_whisper_model(convert.convert(model.path), device)
        return convert.load_whisper_model(convert.checkpoint_path(model, cache_dir), device)
    if model.kind == "openai-whisper":
        whisper = convert.load_whisper_model(model.path, device)
        _set_official_heads(whisper, model.name)
        return whisper
    raise EngineError(f"model {model.name!r} has unknown kind {model.kind!r}")


def _set_official_heads(whisper: "Whisper", name: str) -> None:
    """An official checkpoint (`tiny.pt`, `large-v3.pt`) carries no heads; whisper knows them."""
    import whisper as openai_whisper

    dump = getattr(openai_whisper, "_ALIGNMENT_HEADS", {}).get(name)
    if dump is None:
        return
    try:
        whisper.set_alignment_heads(dump)
    except (ValueError, RuntimeError):  # same name, other shape: keep the default heads
        log.warning("alignment heads for %r do not fit this checkpoint; using defaults", name)
