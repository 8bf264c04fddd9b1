"""Choosing and building an engine by name, without a model: the bench-only null engine."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from whisperd.engines import load_engine
from whisperd.engines.base import ModelInfo, Options

NO_MODEL = ModelInfo("tiny.en", "ctranslate2", Path("/nonexistent"), False)


def test_an_unknown_engine_names_the_ones_there_are():
    with pytest.raises(ValueError, match="auto, faster-whisper, openai-whisper"):
        load_engine("whisper.cpp", NO_MODEL)


def test_the_null_engine_is_accepted_but_not_offered():
    from whisperd.core.errors import ConfigError
    from whisperd.core.settings import add_arguments, build
    from whisperd.daemon.config import DAEMON_SETTINGS, DaemonConfig

    assert build(DaemonConfig, DAEMON_SETTINGS, "whisperd", {"engine": "null"}, {}, "/dev/null").engine == "null"
    parser = argparse.ArgumentParser()
    add_arguments(parser, DAEMON_SETTINGS)
    shown = parser.format_help()
    assert "openai-whisper" in shown and "null" not in shown
    with pytest.raises(ConfigError) as refused:  # nor in the message for a wrong value
        build(DaemonConfig, DAEMON_SETTINGS, "whisperd", {"engine": "bogus"}, {}, "/dev/null")
    assert "openai-whisper" in refused.value.message and "null" not in refused.value.message


def test_the_null_engine_answers_empty_at_once_and_counts():
    engine = load_engine("null", NO_MODEL)
    assert engine.counters() == {"null_answers": 0}
    result = engine.transcribe(np.full(48000, 0.1, np.float32), Options(language="de"))
    assert (result.text, result.language, result.segments) == ("", "de", ())
    assert result.duration == pytest.approx(3.0)
    engine.transcribe(np.zeros(0, np.float32), Options())
    assert engine.counters() == {"null_answers": 2}
