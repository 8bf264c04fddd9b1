"""The short path's pure rules (sizing, guard, counter names): no model, no engine."""

from __future__ import annotations

import doctest

import pytest

from whisperd.core.constants import (
    COMPRESSION_RATIO_THRESHOLD,
    HOP_LENGTH,
    N_FRAMES,
    SAMPLE_RATE,
)
from whisperd.engines import common, short_path


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
    got = short_path.fallback_reason(tokens, text, logprob, cap)
    assert got == reason
    assert got is None or got in short_path.FALLBACK_REASONS


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


def test_every_fallback_reason_has_its_counter():
    slugs = {reason: short_path.reason_slug(reason) for reason in short_path.FALLBACK_REASONS}
    assert slugs == {
        "token cap": "token_cap",
        "repetition": "repetition",
        "repeated phrase": "repeated_phrase",
        "compression ratio": "compression_ratio",
        "log probability": "log_probability",
        "empty": "empty",
        "maybe no speech": "maybe_no_speech",
    }
    for reason in (*short_path.FALLBACK_REASONS, *short_path.DECLINE_REASONS):
        assert f"short_path_fallback_{short_path.reason_slug(reason)}" in common.COUNTER_NAMES
    assert len(set(common.COUNTER_NAMES)) == len(common.COUNTER_NAMES)


def test_doctests():
    failed, tried = doctest.testmod(short_path)
    assert tried >= 5 and failed == 0


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
