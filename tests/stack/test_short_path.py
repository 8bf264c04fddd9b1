"""The short-audio path: its pure sizing and guard, then both engines on real weights."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from testing.speech import FOX_FILES, FOX_TEXT, LONG_FILE, word_recall, words
from whisperd.core.constants import COMPRESSION_RATIO_THRESHOLD, HOP_LENGTH, LOGPROB_THRESHOLD, N_FRAMES, SAMPLE_RATE
from whisperd.engines import short_path
from whisperd.engines.base import Options

# --- pure logic -----------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [0.3, 1.0, 2.5, 4.0, 6.0, 7.4, 9.0, 12.0, 13.0])
def test_context_is_even_floored_and_leaves_room(seconds):
    n = int(seconds * SAMPLE_RATE)
    frames = short_path.context_frames(n)
    assert frames is not None
    assert frames % 2 == 0
    assert frames >= short_path.MIN_FRAMES
    speech = n / HOP_LENGTH
    assert frames - speech >= short_path.TAIL_FRAMES - 1  # room after the speech
    assert frames < N_FRAMES


@pytest.mark.parametrize("seconds", [19.9, 20.0, 25.0, 600.0])
def test_long_audio_takes_the_30s_path(seconds):
    assert short_path.context_frames(int(seconds * SAMPLE_RATE)) is None


def test_context_grows_with_the_audio():
    sizes = [short_path.context_frames(s * SAMPLE_RATE) for s in (1, 5, 8, 10, 12)]
    assert sizes == sorted(sizes)
    assert sizes[0] == short_path.MIN_FRAMES < sizes[-1]


def test_nothing_takes_no_short_path():
    assert short_path.context_frames(0) is None


def test_token_cap_grows_with_seconds():
    assert short_path.token_cap(0.0) == short_path.CAP_BASE_TOKENS
    assert short_path.token_cap(2.0) == 26
    assert short_path.token_cap(10.0) == 90
    assert short_path.token_cap(3.5) > short_path.token_cap(2.9)


@pytest.mark.parametrize("tokens, gram", [
    ([7, 7, 7], (7,)),
    ([1, 2, 3, 4, 3, 4, 3, 4], (3, 4)),
    ([9, 1, 2, 3, 1, 2, 3, 1, 2, 3, 8], (1, 2, 3)),
    ([1, 2, 1, 2, 5], None),  # twice is speech ("no, no")
    ([1, 5, 1, 6, 1, 7], None),  # a common word again and again, not in a row
    ([], None),
])  # fmt: skip
def test_repeated_ngram(tokens, gram):
    assert short_path.repeated_ngram(tokens) == gram


def test_compression_ratio_flags_loops():
    assert short_path.compression_ratio("turn on the kitchen lights") < COMPRESSION_RATIO_THRESHOLD
    assert short_path.compression_ratio("please, " * 20) > COMPRESSION_RATIO_THRESHOLD
    assert short_path.compression_ratio("") == 0.0


GOOD = ([101, 102, 103, 104, 105], " Turn on the kitchen lights.", -0.3)


@pytest.mark.parametrize("tokens, text, logprob, cap, reason", [
    (*GOOD, 26, None),
    (*GOOD, 5, "token cap"),
    ([1, 2, 1, 2, 1, 2], " please please please", -0.2, 26, "repetition"),
    (list(range(20)), " please, " * 12, -0.2, 200, "compression ratio"),
    (GOOD[0], GOOD[1], -1.4, 26, "log probability"),
    ([], "", -0.2, 26, "empty"),
    # The utterance said again, with its last punctuation or without (real recordings).
    ([1, 2, 3, 4, 5, 6, 7, 1, 2, 3, 4, 5, 6], " a b c d e f. a b c d e f", -0.2, 40, "repeated phrase"),
])  # fmt: skip
def test_fallback_reason(tokens, text, logprob, cap, reason):
    assert short_path.fallback_reason(tokens, text, logprob, cap) == reason


@pytest.mark.parametrize("tokens, phrase", [
    ([1, 2, 3, 4, 5, 1, 2, 3, 4, 5], (1, 2, 3, 4, 5)),
    ([1, 2, 3, 4, 5, 9, 9, 1, 2, 3, 4, 5, 8], (1, 2, 3, 4, 5)),
    ([1, 2, 3, 4, 1, 2, 3, 4], None),  # four tokens twice: "turn it off, turn it off" is speech
    ([1, 2, 3, 4, 5, 1, 2, 3, 4, 6], None),
    ([7] * 9, None),  # only overlapping copies: repeated_ngram's case
])  # fmt: skip
def test_repeated_phrase(tokens, phrase):
    assert short_path.repeated_phrase(tokens) == phrase


def test_a_decode_that_may_be_no_speech_goes_to_the_30_s_path():
    tokens, text, logprob = GOOD
    assert short_path.fallback_reason(tokens, " Thank you.", logprob, 26, 0.8, 0.6) == "maybe no speech"
    assert short_path.fallback_reason(tokens, text, logprob, 26, 0.2, 0.6) is None


@pytest.mark.parametrize("kw, takes", [
    (dict(enabled=True, word_timestamps=False, temperature=0.0, n_samples=48000), True),
    (dict(enabled=False, word_timestamps=False, temperature=0.0, n_samples=48000), False),
    (dict(enabled=True, word_timestamps=True, temperature=0.0, n_samples=48000), False),
    (dict(enabled=True, word_timestamps=False, temperature=0.7, n_samples=48000), False),
    (dict(enabled=True, word_timestamps=False, temperature=0.0, n_samples=16000 * 40), False),
])  # fmt: skip
def test_usable(kw, takes):
    assert (short_path.usable(**kw) is not None) == takes


def test_setting_from_env_file_and_cli(tmp_path):
    from whisperd.core.errors import ConfigError
    from whisperd.core.settings import build
    from whisperd.daemon.config import DAEMON_SETTINGS, DaemonConfig

    conf = tmp_path / "w.conf"
    conf.write_text("[whisperd]\nshort_path = off\n")
    assert build(DaemonConfig, DAEMON_SETTINGS, "whisperd", {}, {}, str(conf)).short_path == "off"
    env = {"WHISPERD_SHORT_PATH": "ON"}
    assert build(DaemonConfig, DAEMON_SETTINGS, "whisperd", {}, env, str(conf)).short_path == "on"
    assert build(DaemonConfig, DAEMON_SETTINGS, "whisperd", {"short_path": "off"}, env, str(conf)).short_path == "off"
    with pytest.raises(ConfigError, match="WHISPERD_SHORT_PATH"):
        build(DaemonConfig, DAEMON_SETTINGS, "whisperd", {}, {"WHISPERD_SHORT_PATH": "fast"}, str(conf))


# --- both engines on real weights ---------------------------------------------------------


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


class _Distrust(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.reasons: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("short path distrusted"):
            self.reasons.append(record.getMessage())


@pytest.fixture()
def distrust():
    handler = _Distrust()
    logger = logging.getLogger("whisperd.engines")
    old = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)


def test_a_command_gives_the_same_words_on_both_paths(engine, fox, distrust):
    full = engine.transcribe(fox, Options(beam_size=5))
    short = engine.transcribe(fox, Options(beam_size=5, short_path=True))
    assert distrust.reasons == []  # the short path answered by itself
    assert word_recall(FOX_TEXT, short.text) >= 0.8
    # "The quick…" / "A quick…": the paths may differ in a word, not in the command
    assert len(set(words(full.text)) ^ set(words(short.text))) <= 2, (full.text, short.text)
    assert [s.id for s in short.segments] == [0]
    seg = short.segments[0]
    assert seg.start == 0.0 and seg.end == pytest.approx(short.duration)
    assert short.duration == pytest.approx(len(fox) / 16000)
    assert seg.tokens and seg.avg_logprob > LOGPROB_THRESHOLD
    assert 0.0 <= seg.no_speech_prob <= 1.0 and seg.compression_ratio > 0


def test_greedy_too(engine, fox, distrust):
    short = engine.transcribe(fox, Options(beam_size=1, short_path=True))
    assert distrust.reasons == []
    assert word_recall(FOX_TEXT, short.text) >= 0.8


def test_a_distrusted_short_decode_falls_back(engine, fox, distrust, monkeypatch):
    # A token cap of 1 makes every short decode "hit the cap": the 30 s path must answer.
    monkeypatch.setattr(short_path, "token_cap", lambda seconds: 1)
    got = engine.transcribe(fox, Options(beam_size=1, short_path=True))
    assert distrust.reasons and "token cap" in distrust.reasons[0]
    assert word_recall(FOX_TEXT, got.text) >= 0.8
    full = engine.transcribe(fox, Options(beam_size=1))
    assert got.text == full.text


def test_word_timestamps_take_the_30s_path_and_stay_within_the_audio(engine, fox, distrust):
    got = engine.transcribe(fox, Options(beam_size=1, short_path=True, word_timestamps=True))
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


def test_long_audio_ignores_the_short_path(engine, distrust):
    from whisperd.daemon.audio import decode_audio

    audio = decode_audio(Path(LONG_FILE).read_bytes())
    assert short_path.context_frames(len(audio)) is None
    cut = audio[: 16000 * 21]
    seen = []
    got = engine.transcribe(cut, Options(beam_size=1, short_path=True), on_segment=seen.append)
    assert len(got.segments) > 1 and len(seen) == len(got.segments)  # windowed path: many segments
    assert distrust.reasons == []
