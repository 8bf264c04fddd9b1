"""A protocol request → a validated Job: the one place that decides what a transcription may ask.

`whisperd.core.protocol.parse_request` has checked the frame already - field types,
sizes and option bounds - before the audio was read. What depends on the models
served or on this daemon's settings is decided here, after the audio frame, so
a refusal keeps the connection usable:

- which model serves it: none, "" or one of the default aliases OpenAI clients
  send (`whisper-1`, ...) mean the hot worker's model; any other name must be served;
- the language as a code ("English", "en-US" → "en");
- what an English-only model cannot do: translate, or a language other than English
  (`UnsupportedForModel`, with the parameter at fault);
- the daemon's defaults: beam size, no-speech threshold, VAD, the short path.

Pure functions; `job_for` is what the server calls. The engines trust the Options
they are given.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping

from whisperd.core.errors import ModelNotFound, UnsupportedForModel
from whisperd.core.languages import normalize_language
from whisperd.core.model_names import DEFAULT_ALIASES, pull_hint
from whisperd.core.protocol import Request, TranscribeOptions
from whisperd.core.transcript import Segment
from whisperd.daemon.jobs import Job
from whisperd.engines.base import ModelInfo, Options

if TYPE_CHECKING:
    from whisperd.daemon.config import DaemonConfig


@dataclass(frozen=True)
class Defaults:
    """What the daemon's settings fill in where a request says nothing."""

    beam_size: int = 5
    no_speech_threshold: float = 0.6
    vad_filter: bool = False
    short_path: bool = True

    @staticmethod
    def from_config(config: "DaemonConfig") -> "Defaults":
        return Defaults(
            beam_size=config.beam_size,
            no_speech_threshold=config.no_speech_threshold,
            vad_filter=config.vad_filter,
            short_path=config.short_path == "on",
        )


def model_for(requested: str | None, default: ModelInfo, served: Mapping[str, ModelInfo]) -> ModelInfo:
    """The model a request names; `default` is the hot worker's, `served` every model by name."""
    if requested in (None, "", *DEFAULT_ALIASES):
        return default
    if requested in served:
        return served[requested]
    names = ", ".join([*DEFAULT_ALIASES, *sorted(served)])
    raise ModelNotFound(f"model {requested!r} is not served here (served: {names}); {pull_hint(requested)}")


def check_model_can(model: ModelInfo, task: str, language: str | None) -> None:
    """Refuse what an English-only model cannot do; `language` is a code or None (detect)."""
    if model.multilingual:
        return
    if task == "translate":
        raise UnsupportedForModel(
            f"model {model.name} is English-only and cannot translate; "
            "name a multilingual model (e.g. 'base')", param="model"
        )
    if language not in (None, "en"):
        raise UnsupportedForModel(
            f"model {model.name} is English-only; it cannot transcribe language {language!r} "
            "(name a multilingual model, e.g. 'base')",
            param="language",
        )


def engine_options(asked: TranscribeOptions, model: ModelInfo, defaults: Defaults) -> Options:
    """The Options an engine is given for what the client asked of `model`."""
    language = None if asked.language is None else normalize_language(asked.language)
    check_model_can(model, asked.task, language)
    return Options(
        task=asked.task,
        language=language,
        prompt=asked.prompt,
        temperature=asked.temperature,
        word_timestamps=asked.word_timestamps,
        beam_size=asked.beam_size or defaults.beam_size,
        no_speech_threshold=defaults.no_speech_threshold,
        vad_filter=defaults.vad_filter,
        short_path=defaults.short_path,
        logprobs=asked.logprobs,
    )


def job_for(
    request: Request,
    *,
    default: ModelInfo,
    served: Mapping[str, ModelInfo],
    defaults: Defaults,
    on_segment: Callable[[Segment, float], None] | None = None,
) -> Job:
    """A transcribe request → the Job the pool runs. Raises a WhisperdError the client may read."""
    model = model_for(request.model, default, served)
    return Job(request.id, engine_options(request.options, model, defaults), model.name, on_segment,
               chunking=request.options.chunking)


@dataclass(frozen=True)
class LiveJobs:
    """The jobs of one live session's decodes: greedy partials, finals with the request's settings."""

    session: str
    model: str
    final_options: Options

    def job(self, n: int, final: bool, prompt: str | None) -> Job:
        options = self.final_options
        if final:
            options = dataclasses.replace(options, prompt=prompt)
        else:
            # A partial is shown for a moment and replaced: greedy is enough, and twice as quick.
            options = dataclasses.replace(options, prompt=prompt, beam_size=1, temperature=0.0, partial=True)
        return Job(f"{self.session}.{'f' if final else 'p'}{n}", options, self.model)


def live_jobs_for(request: Request, *, default: ModelInfo, served: Mapping[str, ModelInfo],
                  defaults: Defaults) -> LiveJobs:
    """A stream request → how its decodes are run. Raises a WhisperdError the client may read."""
    model = model_for(request.model, default, served)
    options = dataclasses.replace(engine_options(request.options, model, defaults),
                                  word_timestamps=False, logprobs=False)
    return LiveJobs(request.id, model.name, options)
