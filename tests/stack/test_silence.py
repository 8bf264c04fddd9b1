"""The silence policy (pure) and what the real model makes of silence and noise."""

from __future__ import annotations

import numpy as np
import pytest

from whisperd.engines.silence import is_digital_silence, is_silence_segment


def test_digital_silence():
    assert is_digital_silence(np.zeros(16000, np.float32))
    assert is_digital_silence(np.zeros(0, np.float32))
    assert not is_digital_silence(np.full(16000, 0.01, np.float32))


@pytest.mark.parametrize(
    "text, nsp, logprob, dropped",
    [
        (" You", 0.944, -0.943, True),  # tiny.en on 5 s of zeros
        (" .", 0.946, -0.759, True),  # white noise
        (" ...", 0.1, -0.2, True),  # no word at all
        (" The quick brown fox.", 0.154, -0.549, False),
        (" Tomorrow we will visit our grandmother.", 0.786, -0.424, False),  # real speech, short window
    ],
)
def test_silence_segments(text, nsp, logprob, dropped):
    assert is_silence_segment(text, nsp, logprob, threshold=0.6) is dropped


@pytest.fixture(scope="module", params=["faster-whisper", "openai-whisper"])
def engine(request):
    from testing.stack import CACHE
    from whisperd.daemon.models import resolve_model
    from whisperd.engines import load_engine

    return load_engine(request.param, resolve_model("tiny.en", CACHE), cache_dir=str(CACHE))


@pytest.mark.parametrize("kind", ["zeros", "hum", "noise"])
def test_five_seconds_without_speech_is_empty(engine, kind):
    from whisperd.engines.base import Options

    rng = np.random.default_rng(0)
    t = np.arange(5 * 16000) / 16000
    audio = {
        "zeros": np.zeros(t.size),
        "hum": 0.05 * np.sin(2 * np.pi * 50 * t),
        "noise": 0.1 * rng.standard_normal(t.size),
    }[kind].astype(np.float32)
    result = engine.transcribe(audio, Options())
    assert result.text == ""
    assert result.duration == pytest.approx(5.0)
