"""The models folder on disk, as `whisperctl models` changes it: stage, install, remove, list.

The daemon reads the folder whenever it rescans, so it must never see half a model:

- a pull builds `<models_dir>/.pull-<name>-XXXX/` (same file system, hidden: the daemon
  skips dot entries), verifies every file, then renames it to `<name>/` in one step;
- a replacement (`--force`) renames the old `<name>/` to `.remove-<name>-XXXX/` first and
  deletes it after the new one is in place; a removal likewise: rename, then delete;
- one pull of a name at a time (a lock file), and a pull clears what a killed one left.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from whisperd.core.errors import ModelInstallRefused
from whisperd.core.model_dirs import is_ct2_dir, is_hidden, is_multilingual_ct2, size_on_disk

# Written into a pulled model's folder: where it came from (faster-whisper ignores it).
PROVENANCE = ".whisperd-pull.json"
STAGING_PREFIX = ".pull-"
TRASH_PREFIX = ".remove-"
# A model's folder name: what requests send as `model`, so no path tricks and no spaces.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_name(name: str) -> str:
    """`name` if it can be a folder of the models folder; ModelInstallRefused otherwise.

    >>> check_name("large-v3-turbo")
    'large-v3-turbo'
    >>> check_name("../etc")
    Traceback (most recent call last):
    ...
    whisperd.core.errors.ModelInstallRefused: '../etc' cannot name a model: letters, digits, '.', '_' and '-' only, not first '.'
    """
    if not _NAME_RE.match(name) or name.endswith(".pt"):
        raise ModelInstallRefused(f"{name!r} cannot name a model: letters, digits, '.', '_' and '-' only, "
                                  "not first '.'")
    return name


@dataclass(frozen=True)
class LocalModel:
    """A model in the models folder."""

    name: str
    path: Path
    size: int
    multilingual: bool
    repo: str = ""  # where a pull fetched it from ("" for one dropped in by hand)
    revision: str = ""


def local_models(models_dir: Path) -> list[LocalModel]:
    """Every model in the folder, as the daemon would find it (`<name>/model.bin`, `<name>.pt`)."""
    found: list[LocalModel] = []
    if not models_dir.is_dir():
        return found
    for entry in sorted(models_dir.iterdir()):
        if is_hidden(entry):
            continue
        if is_ct2_dir(entry):
            origin = _provenance(entry)
            found.append(LocalModel(entry.name, entry, size_on_disk(entry), is_multilingual_ct2(entry),
                                    str(origin.get("repo", "")), str(origin.get("revision", ""))))
        elif entry.suffix == ".pt" and entry.is_file():
            found.append(LocalModel(entry.stem, entry, entry.stat().st_size, not entry.stem.endswith(".en")))
    return found


def _provenance(model_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((model_dir / PROVENANCE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def installed_path(models_dir: Path, name: str) -> Path | None:
    """The folder (or .pt) `name` is installed as in the models folder, or None."""
    for candidate in (models_dir / name, models_dir / f"{name}.pt"):
        if is_ct2_dir(candidate) or (candidate.suffix == ".pt" and candidate.is_file()):
            return candidate
    return None


@contextlib.contextmanager
def pull_lock(models_dir: Path, name: str) -> Iterator[None]:
    """Held while `name` is pulled: a second pull of it waits for none, it is refused."""
    lock_path = models_dir / f"{STAGING_PREFIX}{name}.lock"
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ModelInstallRefused(f"another 'whisperctl models pull {name}' is running") from None
        yield
    finally:
        os.close(fd)  # the lock goes with it; the empty file stays, harmless and hidden


def clear_leftovers(models_dir: Path, name: str) -> list[Path]:
    """Remove what a killed pull or removal of `name` left behind (call with the lock held)."""
    gone = []
    for entry in models_dir.iterdir():
        for prefix in (STAGING_PREFIX, TRASH_PREFIX):
            if entry.is_dir() and entry.name.startswith(f"{prefix}{name}-"):
                shutil.rmtree(entry, ignore_errors=True)
                gone.append(entry)
    return gone


def new_staging(models_dir: Path, name: str) -> Path:
    """An empty hidden folder beside the models, on the same file system (the final rename is atomic)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{name}-", dir=models_dir))


def finish_staging(staging: Path, provenance: dict[str, Any]) -> None:
    """Drop huggingface_hub's bookkeeping, record where the model came from, and open it to
    the daemon's user (a root umask of 077 would leave the files unreadable to it)."""
    shutil.rmtree(staging / ".cache", ignore_errors=True)
    (staging / PROVENANCE).write_text(json.dumps(provenance, indent=2) + "\n")
    os.chmod(staging, 0o755)
    for entry in staging.iterdir():
        os.chmod(entry, 0o644)


def install(staging: Path, target: Path) -> bool:
    """Rename the verified `staging` folder to `target`; an existing target is replaced (it
    goes aside first, then away). True when one was replaced."""
    old: Path | None = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f"{TRASH_PREFIX}{target.name}-", dir=target.parent))
        os.replace(target, old / target.name)  # aside, in one step: never a missing-then-half state
    try:
        os.rename(staging, target)
    except OSError:
        if old is not None:
            os.replace(old / target.name, target)  # put the old one back
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return old is not None


def remove(path: Path) -> None:
    """Take a model out of the folder: renamed aside in one step, then deleted."""
    trash = Path(tempfile.mkdtemp(prefix=f"{TRASH_PREFIX}{path.name.removesuffix('.pt')}-", dir=path.parent))
    os.replace(path, trash / path.name)
    shutil.rmtree(trash, ignore_errors=True)
