"""`whisperctl models pull NAME`: fetch a CTranslate2 Whisper model from the hub, verify every
file against the hub's checksum, and install it into the models folder in one rename.

The steps, each its own module: the name → a repository (`whisperd.core.model_names`); what
the repository holds at one commit, and each file (`whisperd.client.hub`); the checksums
(`whisperd.client.checksums`); the staging folder and the rename (`whisperd.client.installed`).
A pull that fails at any step - a dropped connection it could not resume, a checksum that does
not match, Ctrl-C - removes its staging folder: the models folder holds the old state, never a
half-written model.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from whisperd.client import installed
from whisperd.client.checksums import verify
from whisperd.core.errors import ModelFetchFailed, ModelInstallRefused
from whisperd.core.model_names import HUB_REPOS, canonical_name, hub_repo


@dataclass(frozen=True)
class Pulled:
    name: str
    path: Path
    repo: str
    revision: str
    size: int
    replaced: bool = False
    already: bool = False  # it was installed; nothing was fetched


def human_size(n: float) -> str:
    """
    >>> human_size(75_538_270), human_size(3_087_284_237), human_size(512)
    ('75.5 MB', '3.09 GB', '512 B')
    """
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}" if n / scale < 100 else f"{n / scale:.0f} {unit}"
    return f"{int(n)} B"


def resolve(name: str, repo: str | None) -> tuple[str, str]:
    """(the folder name, the repository) for `pull NAME [--repo ORG/NAME]`."""
    if repo is not None:
        return installed.check_name(name), repo
    found = hub_repo(name)
    if found is None:
        known = ", ".join(HUB_REPOS)
        raise ModelInstallRefused(f"no known repository for {name!r} (known: {known}); "
                                  f"name one with --repo ORG/NAME")
    return canonical_name(name), found


def pull(name: str, models_dir: Path, *, repo: str | None = None, revision: str | None = None,
         force: bool = False, progress: bool | None = None,
         say: Callable[[str], None] = lambda line: None) -> Pulled:
    """Fetch, verify and install `name` into `models_dir/<name>/`; `say` gets a line per step."""
    from whisperd.client import hub

    name, repo = resolve(name, repo)
    target = models_dir / name
    existing = installed.installed_path(models_dir, name)
    if existing is not None and not force:
        return Pulled(name, existing, repo, "", 0, already=True)
    if existing is None and target.exists() and not force:
        raise ModelInstallRefused(f"{target} exists and is not a model: move it away, or pass --force to replace it")
    if hub.offline():
        raise ModelFetchFailed("HF_HUB_OFFLINE is set: unset it to pull (the pull is the one step that goes online)")
    try:
        if not models_dir.is_dir():
            models_dir.mkdir(parents=True)
            models_dir.chmod(0o755)  # the daemon's user reads it, whatever umask the administrator has
    except OSError as exc:
        raise ModelInstallRefused(f"cannot create {models_dir}: {exc.strerror or exc}") from None
    with installed.pull_lock(models_dir, name):
        installed.clear_leftovers(models_dir, name)
        remote = hub.remote_model(repo, revision)
        say(f"{name}: {repo} at {remote.revision[:12]}, {len(remote.files)} files, {human_size(remote.size)}")
        free = shutil.disk_usage(models_dir).free
        if free < remote.size:
            raise ModelInstallRefused(f"{models_dir} has {human_size(free)} free; {name} needs {human_size(remote.size)}")
        staging = installed.new_staging(models_dir, name)
        try:
            started = time.monotonic()
            for file in remote.files:
                path = hub.download(remote, file, staging, progress=progress)
                verify(path, file)
            installed.finish_staging(staging, {"repo": repo, "revision": remote.revision,
                                               "files": {f.name: "%s:%s" % f.checksum for f in remote.files}})
            replaced = installed.install(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # gone already when installed
        say(f"{name}: every file verified against the hub's checksums ({time.monotonic() - started:.1f} s)")
    return Pulled(name, target, repo, remote.revision, remote.size, replaced=replaced)
