"""`describe` → `info`: one ASR program, whose models are the ones the daemon serves."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from whisperd import __version__
from whisperd.core.languages import LANGUAGES
from whisperd.core.replies import ModelEntry
from whisperd_wyoming.config import PROGRAM_NAME

if TYPE_CHECKING:
    from wyoming.info import Info

WHISPER_URL = "https://github.com/openai/whisper"


def model_languages(model: ModelEntry) -> list[str]:
    """English-only models hear English; multilingual ones every language Whisper knows."""
    return list(LANGUAGES) if model.multilingual else ["en"]


def build_info(models: Sequence[ModelEntry]) -> "Info":
    from wyoming.info import AsrModel, AsrProgram, Attribution, Info

    whisper = Attribution(name="OpenAI Whisper", url=WHISPER_URL)
    asr_models = [
        AsrModel(name=m.id, attribution=whisper, installed=True, version=None, languages=model_languages(m),
                 description=f"{m.id} ({'multilingual' if m.multilingual else 'English only'}"
                             f"{', the default' if m.default else ''})")
        # The default model first: a client that takes the first one gets what needs no name.
        for m in sorted(models, key=lambda m: not m.default)
    ]
    program = AsrProgram(
        name=PROGRAM_NAME, attribution=Attribution(name="whisperd (OpenAI Whisper)", url=WHISPER_URL),
        installed=True, version=__version__, description="whisperd: private local Whisper, with live partial text",
        models=asr_models, supports_transcript_streaming=True)
    return Info(asr=[program])
