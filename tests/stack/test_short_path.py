"""The short-audio path on both engines with real weights (its pure rules: tests/unit/test_short_path_rules.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from testing.speech import FOX_FILES, FOX_TEXT, LONG_FILE, word_recall, words
from whisperd.core.constants import LOGPROB_THRESHOLD
from whisperd.engines import short_path
from whisperd.engines.base import Options


@pytest.fixture(scope="module")
def models():
    from testing.stack import CACHE
    from whisperd.daemon.models import installed_models

    return installed_models(CACHE)


@pytest.fixture(scope="module", params=["faster-whisper", "openai-whisper"])
def engine(request, models):
    from testing.stack import CACHE
    from whisperd.engines import load_engine

    return load_engine(request.param, models["tiny.en"], cache_dir=str(CACHE))


@pytest.fixture(scope="module")
def fox() -> np.ndarray:
    from whisperd.daemon.audio import decode_audio

    return decode_audio(FOX_FILES["wav"].read_bytes())


def counted(engine, transcribe):
    """What one call did, by the engine's counters: {name: increase}."""
    before = engine.counters()
    result = transcribe()
    after = engine.counters()
    return result, {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def test_a_command_gives_the_same_words_on_both_paths(engine, fox):
    full, did = counted(engine, lambda: engine.transcribe(fox, Options(beam_size=5)))
    assert did == {"full_path_decodes": 1}
    short, did = counted(engine, lambda: engine.transcribe(fox, Options(beam_size=5, short_path=True)))
    assert did == {"short_path_answers": 1}  # the short path answered by itself
    assert word_recall(FOX_TEXT, short.text) >= 0.8
    # "The quick…" / "A quick…": the paths may differ in a word, not in the command
    assert len(set(words(full.text)) ^ set(words(short.text))) <= 2, (full.text, short.text)
    assert [s.id for s in short.segments] == [0]
    seg = short.segments[0]
    assert seg.start == 0.0 and seg.end == pytest.approx(short.duration)
    assert short.duration == pytest.approx(len(fox) / 16000)
    assert seg.tokens and seg.avg_logprob > LOGPROB_THRESHOLD
    assert 0.0 <= seg.no_speech_prob <= 1.0 and seg.compression_ratio > 0


def test_greedy_too(engine, fox):
    short, did = counted(engine, lambda: engine.transcribe(fox, Options(beam_size=1, short_path=True)))
    assert did == {"short_path_answers": 1}
    assert word_recall(FOX_TEXT, short.text) >= 0.8


def test_a_distrusted_short_decode_falls_back(engine, fox, monkeypatch):
    # A token cap of 1 makes every short decode "hit the cap": the 30 s path must answer.
    monkeypatch.setattr(short_path, "token_cap", lambda seconds: 1)
    got, did = counted(engine, lambda: engine.transcribe(fox, Options(beam_size=1, short_path=True)))
    assert did == {"short_path_fallback_token_cap": 1, "full_path_decodes": 1}
    assert word_recall(FOX_TEXT, got.text) >= 0.8
    full = engine.transcribe(fox, Options(beam_size=1))
    assert got.text == full.text


def test_word_timestamps_take_the_30s_path_and_stay_within_the_audio(engine, fox):
    got, did = counted(engine, lambda: engine.transcribe(fox, Options(beam_size=1, short_path=True,
                                                                      word_timestamps=True)))
    assert did == {"full_path_decodes": 1}
    duration = len(fox) / 16000
    assert got.words, "word timestamps asked for, none given"
    for w in got.words:
        assert 0.0 <= w.start <= w.end <= duration + 1e-6
    for s in got.segments:
        assert 0.0 <= s.start <= s.end <= duration + 1e-6


def test_silence_stays_silent(engine):
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(3 * 16000) * 0.01).astype(np.float32)
    got = engine.transcribe(noise, Options(beam_size=1, short_path=True))
    assert len(words(got.text)) <= 1, got.text


def test_long_audio_ignores_the_short_path(engine):
    from whisperd.daemon.audio import decode_audio

    audio = decode_audio(Path(LONG_FILE).read_bytes())
    assert short_path.context_frames(len(audio)) is None
    cut = audio[: 16000 * 21]
    seen = []
    got, did = counted(engine, lambda: engine.transcribe(cut, Options(beam_size=1, short_path=True),
                                                         on_segment=seen.append))
    assert len(got.segments) > 1 and len(seen) == len(got.segments)  # windowed path: many segments
    assert did == {"full_path_decodes": 1}
