"""whisperd.daemon.requests: a protocol request → a validated Job, without a model or a socket."""

from __future__ import annotations

from pathlib import Path

import pytest

from whisperd.core.errors import InvalidParameter, ModelNotFound, UnsupportedForModel
from whisperd.core.model_names import DEFAULT_ALIASES
from whisperd.core.protocol import Request, TranscribeOptions
from whisperd.daemon.requests import (
    Defaults,
    check_model_can,
    engine_options,
    job_for,
    model_for,
)
from whisperd.engines.base import ModelInfo, Options

TINY_EN = ModelInfo("tiny.en", "ctranslate2", Path("/models/tiny.en"), multilingual=False)
BASE = ModelInfo("base", "ctranslate2", Path("/models/base"), multilingual=True)
SERVED = {"tiny.en": TINY_EN, "base": BASE}


@pytest.mark.parametrize("name", [None, "", *DEFAULT_ALIASES])
def test_no_name_and_the_aliases_mean_the_default_model(name):
    assert model_for(name, TINY_EN, SERVED) is TINY_EN
    assert model_for(name, BASE, SERVED) is BASE


def test_a_served_name_is_that_model():
    assert model_for("base", TINY_EN, SERVED) is BASE


def test_an_unknown_model_names_what_is_served():
    with pytest.raises(ModelNotFound) as err:
        model_for("large-v3", TINY_EN, SERVED)
    assert err.value.param == "model"
    assert "whisper-1" in err.value.message and "base, tiny.en" in err.value.message


@pytest.mark.parametrize("task, language, param", [
    ("translate", None, "model"),
    ("translate", "en", "model"),
    ("transcribe", "de", "language"),
])
def test_english_only_model_refuses_with_the_parameter_at_fault(task, language, param):
    with pytest.raises(UnsupportedForModel) as err:
        check_model_can(TINY_EN, task, language)
    assert err.value.param == param and err.value.code == "unsupported_for_model"
    check_model_can(BASE, task, language)  # a multilingual model can


@pytest.mark.parametrize("language", [None, "en"])
def test_english_only_model_transcribes_english_or_detects(language):
    check_model_can(TINY_EN, "transcribe", language)


@pytest.mark.parametrize("asked, code", [("English", "en"), (" EN ", "en"), ("en-US", "en"), ("pt_BR", "pt")])
def test_language_is_normalised_before_the_model_check(asked, code):
    assert engine_options(TranscribeOptions(language=asked), BASE, Defaults()).language == code
    if code == "en":  # "English" on an English-only model is fine once it is a code
        assert engine_options(TranscribeOptions(language=asked), TINY_EN, Defaults()).language == "en"


def test_an_unknown_language_is_an_invalid_parameter():
    with pytest.raises(InvalidParameter) as err:
        engine_options(TranscribeOptions(language="klingon"), BASE, Defaults())
    assert err.value.param == "language"


def test_daemon_defaults_fill_what_the_request_leaves_open():
    defaults = Defaults(beam_size=3, no_speech_threshold=0.4, vad_filter=True, short_path=False)
    options = engine_options(TranscribeOptions(), TINY_EN, defaults)
    assert options == Options(beam_size=3, no_speech_threshold=0.4, vad_filter=True, short_path=False)
    asked = TranscribeOptions(task="translate", language="de", prompt="Namen", temperature=0.4,
                              word_timestamps=True, beam_size=8)
    assert engine_options(asked, BASE, defaults) == Options(
        task="translate", language="de", prompt="Namen", temperature=0.4, word_timestamps=True, beam_size=8,
        no_speech_threshold=0.4, vad_filter=True, short_path=False)


def test_defaults_from_the_daemon_config():
    from whisperd.core.settings import build
    from whisperd.daemon.config import DAEMON_SETTINGS, DaemonConfig

    config = build(DaemonConfig, DAEMON_SETTINGS, "whisperd",
                   {"beam_size": "2", "short_path": "off", "vad_filter": "true"}, {}, "/dev/null")
    assert Defaults.from_config(config) == Defaults(beam_size=2, no_speech_threshold=config.no_speech_threshold,
                                                    vad_filter=True, short_path=False)
    plain = build(DaemonConfig, DAEMON_SETTINGS, "whisperd", {}, {}, "/dev/null")
    assert Defaults.from_config(plain) == Defaults()  # the dataclass's defaults are the settings' defaults


def test_job_for_a_request():
    seen = []
    request = Request(op="transcribe", id="r-1", model="whisper-1", audio_size=10,
                      options=TranscribeOptions(language="English"))
    job = job_for(request, default=BASE, served=SERVED, defaults=Defaults(), on_segment=lambda s, f: seen.append(f))
    assert (job.id, job.model, job.options.language, job.cancelled) == ("r-1", "base", "en", False)
    job.on_segment(None, 0.5)
    assert seen == [0.5]


def test_job_for_refuses_before_any_job_exists():
    request = Request(op="transcribe", id="r-2", audio_size=10, options=TranscribeOptions(task="translate"))
    with pytest.raises(UnsupportedForModel):
        job_for(request, default=TINY_EN, served=SERVED, defaults=Defaults())
    with pytest.raises(ModelNotFound):
        job_for(Request(op="transcribe", id="r-3", model="nope"), default=TINY_EN, served=SERVED,
                defaults=Defaults())

