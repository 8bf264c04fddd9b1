"""Cutting a stream into windows at pauses (energy detector: no model)."""

from __future__ import annotations

import numpy as np

from whisperd.core.chunking import Chunking
from whisperd.daemon.windows import EnergyDetector, Windower

RATE = 16000


def signal(pattern: list[tuple[float, bool]]) -> np.ndarray:
    """Tone where True, digital silence where False, for the given seconds."""
    parts = []
    for seconds, on in pattern:
        t = np.arange(int(seconds * RATE)) / RATE
        parts.append((0.3 * np.sin(2 * np.pi * 220 * t) if on else np.zeros_like(t)).astype(np.float32))
    return np.concatenate(parts)


def chunks(pcm: np.ndarray, size: int = 1152):
    return (pcm[i : i + size] for i in range(0, len(pcm), size))


def cut(pcm: np.ndarray, chunking: Chunking | None = None) -> list:
    return list(Windower(EnergyDetector(), chunking).windows(chunks(pcm)))


# Speech-like: 1.5 s on, 0.3 s pause, with one long (1.2 s) pause at 18 s.
SPEECH = signal([(1.5, True), (0.3, False)] * 10 + [(1.2, False)] + [(1.5, True), (0.3, False)] * 30)


def test_windows_are_the_stream_end_to_end_each_at_most_30_s():
    windows = cut(SPEECH)
    assert len(windows) >= 3
    assert all(w.seconds <= 30.0 for w in windows)
    assert np.array_equal(np.concatenate([w.pcm for w in windows]), SPEECH)
    assert [w.index for w in windows] == list(range(len(windows)))
    assert all(b.start == a.start + len(a.pcm) for a, b in zip(windows, windows[1:]))


def test_every_cut_falls_in_a_pause():
    for w in cut(SPEECH)[1:]:
        assert np.max(np.abs(SPEECH[w.start - 80 : w.start + 80])) == 0.0, f"cut at {w.start / RATE:.2f} s"


def test_the_cut_is_at_the_longest_pause_not_the_last():
    assert 18.0 <= cut(SPEECH)[1].start / RATE <= 19.2  # the 1.2 s pause, not a 0.3 s one near 30 s


def test_pauses_shorter_than_the_silence_duration_are_cut_only_in_their_middle():
    short_only = signal([(1.5, True), (0.3, False)] * 30)
    pause_ends = [1.5 + 1.8 * k + 0.3 for k in range(30)]
    default = cut(short_only)[1].start / RATE
    strict = cut(short_only, Chunking(silence_duration_ms=1000))[1].start / RATE
    # 200 ms: a pause qualifies, cut at its start (300 ms of padding is more than it has);
    # 1000 ms: none does, so the middle of the longest (the latest of equals).
    assert any(abs(default - (end - 0.3)) < 0.04 for end in pause_ends)  # its start: middle is later
    assert any(abs(strict - (end - 0.15)) < 0.04 for end in pause_ends)


def test_prefix_padding_keeps_audio_before_the_next_speech():
    # The pause runs 17.7-19.2 s: its middle keeps 0.75 s before the speech; 1 s of padding moves
    # the cut earlier.
    late = [w.start / RATE for w in cut(SPEECH, Chunking(prefix_padding_ms=1000))][1]
    assert abs(late - (19.2 - 1.0)) < 0.05
    starts = [w.start / RATE for w in cut(SPEECH, Chunking(prefix_padding_ms=500))][1:2]
    assert starts and abs(starts[0] - 18.45) < 0.05  # the middle: more than 0.5 s before speech


def test_a_window_without_sound_is_skipped_and_counted():
    pcm = signal([(10, True), (70, False), (5, True)])
    windower = Windower(EnergyDetector())
    windows = list(windower.windows(chunks(pcm)))
    assert windower.skipped >= 1 and windower.total_samples == len(pcm)
    assert all(np.any(w.pcm) for w in windows)
    assert [w.index for w in windows] == list(range(len(windows)))


def test_no_pause_at_all_still_cuts_at_30_s():
    windows = cut(signal([(75, True)]))
    assert [round(w.seconds, 1) for w in windows[:2]] == [30.0, 30.0]
