"""The hub's checksums, and checking a downloaded file against them. Stdlib only.

The hub names every file of a repository by a checksum (`HfApi.model_info(...,
files_metadata=True)`): a file kept in Git LFS (the weights) by the sha256 of its
content; any other (config.json, vocabulary.txt) by its git blob id - the sha1 of
`blob <size>\\0` followed by the content, as `git hash-object` computes it.

>>> import tempfile, os
>>> with tempfile.NamedTemporaryFile(delete=False) as f:
...     _ = f.write(b"hello\\n")
>>> git_blob_id(f.name)  # what `printf 'hello\\n' | git hash-object --stdin` prints
'ce013625030ba8dba906f756967f9e9ca394464a'
>>> sha256_of(f.name)
'5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03'
>>> os.unlink(f.name)
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from whisperd.core.errors import ChecksumMismatch

CHUNK = 8 << 20


@dataclass(frozen=True)
class RemoteFile:
    """One file of a repository as the hub describes it."""

    name: str
    size: int
    sha256: str | None = None  # LFS files: the content's sha256
    git_oid: str | None = None  # other files: the git blob id

    @property
    def checksum(self) -> tuple[str, str]:
        """(algorithm, expected hex digest): sha256 where the hub has one, else the git blob id."""
        if self.sha256:
            return "sha256", self.sha256.lower()
        if self.git_oid:
            return "git-sha1", self.git_oid.lower()
        raise ChecksumMismatch(f"the hub gives no checksum for {self.name}: refusing a file that cannot be verified")


def sha256_of(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def git_blob_id(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha1(f"blob {os.path.getsize(path)}\0".encode())
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, remote: RemoteFile) -> None:
    """Raise ChecksumMismatch unless `path` is exactly the file the hub described."""
    size = path.stat().st_size
    if size != remote.size:
        raise ChecksumMismatch(f"{remote.name}: {size} bytes arrived, the hub says {remote.size}")
    algorithm, expected = remote.checksum
    actual = sha256_of(path) if algorithm == "sha256" else git_blob_id(path)
    if actual != expected:
        raise ChecksumMismatch(f"{remote.name}: {algorithm} is {actual}, the hub says {expected}")
