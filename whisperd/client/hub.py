"""The Hugging Face hub, through `huggingface_hub`: what a repository holds, and one file of it.

Only `whisperctl models pull` comes here, and `huggingface_hub` is imported only when it
does: no other program of whisperd (least of all the daemon, which has no network)
imports this module. huggingface_hub reads its own environment: `HF_ENDPOINT` (a mirror),
`HF_TOKEN` (a gated repository), `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` (through its
HTTP client), `HF_HUB_DOWNLOAD_TIMEOUT`; nothing here names a host.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from whisperd.client.checksums import RemoteFile
from whisperd.core.errors import ModelFetchFailed
from whisperd.core.model_dirs import REQUIRED_CT2_FILES

TRUE = ("1", "ON", "YES", "TRUE")  # how huggingface_hub reads a yes in its environment
# What faster-whisper's own download fetches from a CTranslate2 Whisper repository.
WANTED_PATTERNS = ("config.json", "preprocessor_config.json", "model.bin", "tokenizer.json", "vocabulary.*")


@dataclass(frozen=True)
class RemoteModel:
    repo: str
    revision: str  # the commit every file is fetched at: a pull never mixes two commits
    files: tuple[RemoteFile, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def wanted_files(repo: str, siblings: Iterable[Any]) -> tuple[RemoteFile, ...]:
    """The repository's files a CTranslate2 Whisper model needs, with their checksums.

    `siblings` are huggingface_hub's `RepoSibling`s (`rfilename`, `size`, `blob_id`, `lfs`).
    """
    files = []
    for s in siblings:
        if "/" in s.rfilename or not any(fnmatch.fnmatch(s.rfilename, p) for p in WANTED_PATTERNS):
            continue
        lfs = s.lfs
        size = s.size if s.size is not None else (lfs["size"] if lfs else None)
        if size is None:
            raise ModelFetchFailed(f"{repo}: the hub gives no size for {s.rfilename}")
        files.append(RemoteFile(s.rfilename, int(size), sha256=lfs["sha256"] if lfs else None, git_oid=s.blob_id))
    names = {f.name for f in files}
    missing = [n for n in REQUIRED_CT2_FILES if n not in names]
    if missing:
        raise ModelFetchFailed(f"{repo} is not a CTranslate2 Whisper model: it has no {', '.join(missing)}")
    return tuple(sorted(files, key=lambda f: f.size))  # the small files first: a bad repo fails fast


def _hub_error(repo: str, exc: Exception) -> ModelFetchFailed:
    """huggingface_hub's and its HTTP client's errors, in a sentence an administrator can act on."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    endpoint = constants.ENDPOINT
    if isinstance(exc, OfflineModeIsEnabled) or constants.HF_HUB_OFFLINE:
        return ModelFetchFailed("HF_HUB_OFFLINE is set: unset it to pull (the pull is the one step that goes online)")
    if isinstance(exc, GatedRepoError):
        return ModelFetchFailed(f"{repo} is gated: accept its terms on the hub and set HF_TOKEN")
    if isinstance(exc, RepositoryNotFoundError):
        return ModelFetchFailed(f"no repository {repo} at {endpoint}")
    if isinstance(exc, RevisionNotFoundError):
        return ModelFetchFailed(f"{repo} has no such revision")
    if isinstance(exc, HfHubHTTPError):
        return ModelFetchFailed(f"{endpoint} answered: {str(exc).splitlines()[0]}")
    return ModelFetchFailed(f"cannot fetch {repo} from {endpoint}: {type(exc).__name__}: {str(exc)[:200]} "
                            "(HF_ENDPOINT names a mirror, HTTPS_PROXY a proxy)")


def _fetch_errors() -> tuple[type[BaseException], ...]:
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    return (HfHubHTTPError, OfflineModeIsEnabled, httpx2.HTTPError, httpx2.InvalidURL, OSError, ValueError)


def remote_model(repo: str, revision: str | None = None) -> RemoteModel:
    """What `repo` holds at `revision` (default: its main branch), pinned to one commit."""
    from huggingface_hub import HfApi

    try:
        info = HfApi().model_info(repo, revision=revision, files_metadata=True)
    except _fetch_errors() as exc:
        raise _hub_error(repo, exc) from None
    if not info.sha:
        raise ModelFetchFailed(f"{repo}: the hub did not say which commit it holds")
    return RemoteModel(repo, info.sha, wanted_files(repo, info.siblings or ()))


def download(model: RemoteModel, file: RemoteFile, into: Path, *, progress: bool | None) -> Path:
    """One file into the folder `into`, resumed within the call when the connection drops
    (huggingface_hub retries with a Range request). `progress`: None shows a bar on a
    terminal, True always, False never."""
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(model.repo, file.name, revision=model.revision, local_dir=into,
                               tqdm_class=_bar_class(progress, file.name))
    except _fetch_errors() as exc:
        raise _hub_error(model.repo, exc) from None
    return Path(path)


def _bar_class(progress: bool | None, label: str) -> Any:
    """A tqdm bar per file, labelled with the file's name (not the URL it comes from): on a
    terminal by default (tqdm's `disable=None`), unless HF_HUB_DISABLE_PROGRESS_BARS is set."""
    from tqdm.auto import tqdm

    if progress is None and os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS", "").strip().upper() in TRUE:
        progress = False

    class Bar(tqdm):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)
            kwargs["desc"] = label
            kwargs["disable"] = None if progress is None else not progress
            super().__init__(*args, **kwargs)

    return Bar


def offline() -> bool:
    """HF_HUB_OFFLINE set: huggingface_hub would refuse every request."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in TRUE
