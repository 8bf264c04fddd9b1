"""What a model directory on disk looks like: shared by the daemon (which serves them) and
`whisperctl models` (which installs, lists and removes them). Stdlib only; reads, never writes.

Three layouts hold a CTranslate2 Whisper model:

- a plain directory: `model.bin`, `config.json`, `tokenizer.json`, `vocabulary.txt`
  (the models folder's `<name>/`, the bundled packages);
- a Hugging Face hub cache, as faster-whisper, speaches and wyoming-faster-whisper leave it::

      <cache>/models--Systran--faster-whisper-small/
          refs/main                     the commit `main` pointed at when it was fetched
          snapshots/<commit>/model.bin  -> ../../blobs/<sha256>   (symlinks into blobs/)
          blobs/<sha256 or git oid>

- a `.pt` openai-whisper checkpoint (`<name>.pt`).

Entries whose name starts with a dot are never models: `whisperctl models pull` builds
a model in `.pull-<name>-*` beside the others and renames it into place when complete.
"""

from __future__ import annotations

import os
from pathlib import Path

# The files faster-whisper reads from a CTranslate2 Whisper directory (its own download
# fetches the same set); model.bin is the one a directory must have to count as a model.
CT2_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt", "vocabulary.json",
             "preprocessor_config.json")
REQUIRED_CT2_FILES = ("model.bin", "config.json", "tokenizer.json")
HF_REPO_PREFIX = "models--"
# English-only Whisper vocabularies have 51864 tokens; multilingual ones 51865 and more.
MULTILINGUAL_VOCABULARY = 51865


def is_hidden(entry: Path) -> bool:
    """A staging or trash entry (`.pull-…`, `.remove-…`), never a model."""
    return entry.name.startswith(".")


def is_ct2_dir(path: Path) -> bool:
    return path.is_dir() and (path / "model.bin").is_file()


def is_multilingual_ct2(path: Path) -> bool:
    """From the vocabulary's size; without one, by the directory's name (`*.en`: English-only)."""
    vocab = path / "vocabulary.txt"
    if vocab.is_file():
        with vocab.open("rb") as f:
            return sum(1 for _ in f) >= MULTILINGUAL_VOCABULARY
    return not path.name.endswith(".en")


def size_on_disk(path: Path) -> int:
    """Bytes of a model file, or of every file under a directory (symlinks followed: a Hugging
    Face snapshot's files are links into its blobs)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:
                pass  # a dangling link counts for nothing
    return total


def weights_file(path: Path) -> Path:
    """The file that holds the weights: `model.bin` of a CTranslate2 directory, or the `.pt` itself."""
    return path / "model.bin" if path.is_dir() else path


# --- the Hugging Face hub cache ------------------------------------------------------------


def repo_folder_name(repo: str) -> str:
    """'Systran/faster-whisper-small' → 'models--Systran--faster-whisper-small' (the hub cache's name)."""
    return HF_REPO_PREFIX + repo.replace("/", "--")


def repo_from_folder(folder: str) -> str | None:
    """The inverse of `repo_folder_name`; None for anything that is not a model repository."""
    if not folder.startswith(HF_REPO_PREFIX):
        return None
    parts = folder[len(HF_REPO_PREFIX):].split("--")
    return "/".join(parts) if len(parts) >= 2 and all(parts) else None


def hf_snapshot(repo_folder: Path) -> Path | None:
    """The snapshot `refs/main` points at; without refs/main, the only snapshot there is.

    None when there is no complete CTranslate2 model in it (a download cut short leaves
    links to blobs that never arrived).
    """
    snapshots = repo_folder / "snapshots"
    ref = repo_folder / "refs" / "main"
    candidate: Path | None = None
    if ref.is_file():
        commit = ref.read_text().strip()
        if commit and "/" not in commit and commit not in (".", ".."):
            candidate = snapshots / commit
    elif snapshots.is_dir():
        found = [s for s in snapshots.iterdir() if s.is_dir()]
        if len(found) == 1:
            candidate = found[0]
    if candidate is None or not all((candidate / f).is_file() for f in REQUIRED_CT2_FILES):
        return None
    return candidate


def hf_cache_models(cache: Path) -> dict[str, Path]:
    """Every complete CTranslate2 model in a hub cache: repository → snapshot directory."""
    found: dict[str, Path] = {}
    if not cache.is_dir():
        return found
    for entry in sorted(cache.iterdir()):
        repo = repo_from_folder(entry.name)
        if repo is None or not entry.is_dir():
            continue
        snapshot = hf_snapshot(entry)
        if snapshot is not None:
            found[repo] = snapshot
    return found
