"""The skeleton both Whisper engines share (`engines/common.py`), on fake decoders: no model.

What a real engine does on each path is in tests/stack/test_short_path.py and
test_silence.py; here, which path runs, what it returns and what it counts.
"""

from __future__ import annotations

import threading
from typing import Iterator

import numpy as np
import pytest

from whisperd.core.constants import SAMPLE_RATE
from whisperd.core.transcript import Segment
from whisperd.engines import common
from whisperd.engines.base import Options

SPEECH = np.full(3 * SAMPLE_RATE, 0.1, np.float32)  # 3 s, not digital silence
GOOD = common.ShortDecode([101, 102, 103, 104, 105], " Turn on the kitchen lights.", -0.3, 0.05, "en")


def seg(text: str, start: float, end: float, nsp: float = 0.1, logprob: float = -0.3) -> Segment:
    return Segment(id=99, seek=0, start=start, end=end, text=text, tokens=(1, 2), temperature=0.0,
                   avg_logprob=logprob, compression_ratio=1.2, no_speech_prob=nsp)


class Decoders:
    """A short decoder with a canned answer and a 30 s decoder with canned segments, both recorded."""

    def __init__(self, short: common.ShortDecode | str = GOOD, full: tuple[Segment, ...] = ()) -> None:
        self.short_answer, self.full_segments = short, full
        self.short_calls: list[tuple[int, int]] = []  # (frames, cap)
        self.full_calls = 0
        self.yielded = 0

    def short(self, audio: np.ndarray, options: Options, frames: int, cap: int) -> common.ShortDecode | str:
        self.short_calls.append((frames, cap))
        return self.short_answer

    def full(self, audio: np.ndarray, options: Options) -> common.FullDecode:
        self.full_calls += 1

        def segments() -> Iterator[Segment]:
            for s in self.full_segments:
                self.yielded += 1
                yield s

        return common.FullDecode("en", segments())


def run(decoders: Decoders, audio: np.ndarray = SPEECH, options: Options = Options(short_path=True),
        short: bool = True, seen: list | None = None):
    counters = common.EngineCounters()
    result = common.transcribe(audio, options, None if seen is None else seen.append, counters=counters,
                               decode_short=decoders.short if short else None, decode_full=decoders.full)
    return result, counters.snapshot()


def nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v}


def test_every_counter_starts_at_zero():
    assert common.EngineCounters().snapshot() == dict.fromkeys(common.COUNTER_NAMES, 0)


@pytest.mark.parametrize("audio", [np.zeros(5 * SAMPLE_RATE, np.float32), np.zeros(0, np.float32)])
def test_digital_silence_skips_the_model(audio):
    d = Decoders()
    result, counts = run(d, audio, Options(short_path=True, language="de", task="translate"))
    assert (result.text, result.segments, result.language, result.task) == ("", (), "de", "translate")
    assert result.duration == pytest.approx(len(audio) / SAMPLE_RATE)
    assert d.short_calls == [] and d.full_calls == 0
    assert nonzero(counts) == {"digital_silence": 1}


def test_a_trusted_short_decode_answers():
    d, seen = Decoders(), []
    result, counts = run(d, seen=seen)
    assert d.full_calls == 0
    [(frames, cap)] = d.short_calls
    assert frames == 750 and cap == 10 + 24  # the context's floor; the cap for 3 s
    assert result.text == "Turn on the kitchen lights." and result.language == "en"
    [segment] = result.segments
    assert (segment.id, segment.start, segment.end) == (0, 0.0, pytest.approx(3.0))
    assert segment.text == GOOD.text and segment.tokens == tuple(GOOD.tokens)
    assert segment.compression_ratio > 0
    assert seen == [segment]
    assert nonzero(counts) == {"short_path_answers": 1}


def test_a_short_answer_that_is_silence_has_no_segments():
    d = Decoders(short=common.ShortDecode([13], " .", -0.3, 0.05, "en"))
    result, counts = run(d)
    assert result.text == "" and result.segments == ()
    assert nonzero(counts) == {"short_path_answers": 1}  # answered, without inventing words


@pytest.mark.parametrize("decode, slug", [
    (common.ShortDecode(GOOD.tokens, " Thank you.", -0.3, 0.9, "en"), "maybe_no_speech"),
    (common.ShortDecode(list(range(200, 240)), " a long ramble", -0.3, 0.05, "en"), "token_cap"),
    (common.ShortDecode([1, 2, 1, 2, 1, 2], " please please please", -0.2, 0.05, "en"), "repetition"),
    (common.ShortDecode([1, 2, 3, 4, 5, 6, 7, 1, 2, 3, 4, 5, 6], " a b c d e f. a b c d e f", -0.2, 0.05, "en"),
     "repeated_phrase"),
    (common.ShortDecode(list(range(20)), " please, " * 12, -0.2, 0.05, "en"), "compression_ratio"),
    (common.ShortDecode(GOOD.tokens, GOOD.text, -1.4, 0.05, "en"), "log_probability"),
    (common.ShortDecode([], "", -0.2, 0.05, "en"), "empty"),
    ("language unsure", "language_unsure"),
    ("prompt too long", "prompt_too_long"),
])  # fmt: skip
def test_a_distrusted_or_declined_short_decode_takes_the_30s_path(decode, slug):
    d = Decoders(short=decode, full=(seg(" The quick brown fox.", 0.0, 2.0),))
    result, counts = run(d)
    assert len(d.short_calls) == 1 and d.full_calls == 1
    assert result.text == "The quick brown fox."
    assert nonzero(counts) == {f"short_path_fallback_{slug}": 1, "full_path_decodes": 1}


@pytest.mark.parametrize("options, short", [
    (Options(short_path=False), True),
    (Options(short_path=True, word_timestamps=True), True),
    (Options(short_path=True, temperature=0.4), True),
    (Options(short_path=True), False),  # the engine cannot take it now (faster-whisper's VAD)
])
def test_requests_the_short_path_cannot_serve_go_straight_to_the_30s_path(options, short):
    d = Decoders(full=(seg(" Hello.", 0.0, 1.0),))
    result, counts = run(d, options=options, short=short)
    assert d.short_calls == [] and d.full_calls == 1
    assert result.text == "Hello."
    assert nonzero(counts) == {"full_path_decodes": 1}


def test_long_audio_goes_straight_to_the_30s_path():
    d = Decoders()
    _, counts = run(d, np.full(25 * SAMPLE_RATE, 0.1, np.float32))
    assert d.short_calls == [] and nonzero(counts) == {"full_path_decodes": 1}


def test_the_30s_path_drops_silence_renumbers_and_clamps_as_it_decodes():
    d = Decoders(full=(
        seg(" One.", 0.0, 1.0),
        seg(" You", 1.0, 2.0, nsp=0.95, logprob=-0.95),  # invented from silence
        seg(" ...", 2.0, 2.5),  # no word at all
        seg(" Two.", 2.5, 3.4),  # the last window's end passes the audio's (3 s)
    ))  # fmt: skip
    seen: list[tuple[int, Segment]] = []
    counters = common.EngineCounters()
    result = common.transcribe(SPEECH, Options(), lambda s: seen.append((d.yielded, s)), counters=counters,
                               decode_short=d.short, decode_full=d.full)
    assert [(s.id, s.text, s.start, s.end) for s in result.segments] == [
        (0, " One.", 0.0, 1.0), (1, " Two.", 2.5, 3.0)]
    assert result.text == "One. Two." and result.duration == pytest.approx(3.0)
    assert [s for _, s in seen] == list(result.segments)
    assert seen[0][0] == 1  # delivered before the next segment was decoded


def test_counters_add_up_across_threads():
    counters = common.EngineCounters()

    def work() -> None:
        for _ in range(2000):
            counters.add("short_path_answers")
            counters.add("full_path_decodes")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts = counters.snapshot()
    assert counts["short_path_answers"] == counts["full_path_decodes"] == 16000
    counts["short_path_answers"] = 0  # a snapshot is a copy
    assert counters.snapshot()["short_path_answers"] == 16000
