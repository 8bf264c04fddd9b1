"""What the real model makes of silence and noise, on both engines (the pure rules:
tests/unit/test_silence_rules.py)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module", params=["faster-whisper", "openai-whisper"])
def engine(request):
    from testing.stack import CACHE
    from whisperd.daemon.models import resolve_model
    from whisperd.engines import load_engine

    return load_engine(request.param, resolve_model("tiny.en", CACHE), cache_dir=str(CACHE))


@pytest.mark.parametrize("kind, path", [("zeros", "digital_silence"), ("hum", "full_path_decodes"),
                                        ("noise", "full_path_decodes")])
def test_five_seconds_without_speech_is_empty(engine, kind, path):
    from whisperd.engines.base import Options

    rng = np.random.default_rng(0)
    t = np.arange(5 * 16000) / 16000
    audio = {
        "zeros": np.zeros(t.size),
        "hum": 0.05 * np.sin(2 * np.pi * 50 * t),
        "noise": 0.1 * rng.standard_normal(t.size),
    }[kind].astype(np.float32)
    before = engine.counters()
    result = engine.transcribe(audio, Options())
    after = engine.counters()
    assert result.text == ""
    assert result.duration == pytest.approx(5.0)
    # zeros never reach the model; hum and noise do, and the silence policy empties them
    assert {k: after[k] - before[k] for k in after if after[k] != before[k]} == {path: 1}
