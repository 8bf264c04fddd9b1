"""Long recordings as windows, with the real model, the real daemon and its cold workers.

- windows are cut in pauses of real speech, never inside a word;
- a 4-hour upload (digital silence; a tone) is answered in flat daemon memory,
  one at a time and two at once: nothing holds it as one float32 array;
- the window path says the same words as the whole-file path on real speech;
- progress comes window by window, in order, and a client that hangs up stops the rest.
"""

from __future__ import annotations

import asyncio
import io
import time
from functools import lru_cache

import numpy as np
import pytest

from testing.speech import JFK_FILE, JFK_TEXT, wav16, word_recall
from testing.stack import Daemon, status
from tests.stack.reliability.probes import PeakMemory, rss_mb
from whisperd.client import AsyncClient, Client
from whisperd.core.errors import Overloaded
from whisperd.daemon.audio import decode_audio, stream_audio
from whisperd.daemon.windows import Windower, default_detector

FOUR_HOURS = 4 * 3600
# The goal: a 4-hour upload costs the daemon at most this much above idle.
MEMORY_GOAL_MB = 400


@lru_cache(maxsize=None)
def jfk_times(n: int) -> bytes:
    """Real speech, said `n` times over: 11 s each, with its own pauses."""
    return wav16(np.tile(decode_audio(JFK_FILE.read_bytes()), n))


@lru_cache(maxsize=None)
def four_hours(kind: str) -> bytes:
    """4 hours as a small upload: FLAC of digital silence (2.7 MB), or an 8 kbit/s MP3 of a
    400 Hz tone (14.6 MB: 36 s encoded once, its frames repeated - MP3 frames stand alone)."""
    import av

    out = io.BytesIO()
    if kind == "silence":
        with av.open(out, "w", format="flac") as c:
            s = c.add_stream("flac", rate=16000, layout="mono")
            s.format = "s16"
            block = np.zeros((1, 160000), "<i2")
            for _ in range(FOUR_HOURS // 10):
                frame = av.AudioFrame.from_ndarray(block, format="s16", layout="mono")
                frame.sample_rate = 16000
                for p in s.encode(frame):
                    c.mux(p)
            for p in s.encode(None):
                c.mux(p)
        return out.getvalue()
    rate = 8000
    with av.open(out, "w", format="mp3") as c:
        s = c.add_stream("libmp3lame", rate=rate, layout="mono")
        s.bit_rate = 8000
        pcm = (0.3 * np.sin(2 * np.pi * 400 * np.arange(36 * rate) / rate) * 32767).astype("<i2")
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16p", layout="mono")
        frame.sample_rate = rate
        for p in [*s.encode(frame), *s.encode(None)]:
            c.mux(p)
    # Each piece decodes to a little over 36 s (the encoder's delay and padding): 398 of them
    # stay just under the daemon's 4-hour limit.
    return out.getvalue() * (FOUR_HOURS // 36 - 2)


@pytest.fixture(scope="module")
def daemon():
    d = Daemon("--engine", "faster-whisper", "--worker-idle-timeout", "600")
    yield d
    d.stop()


@pytest.fixture(scope="module")
def whole_daemon():
    d = Daemon("--engine", "faster-whisper", "--window-mode", "whole", "--max-cold-workers", "0")
    yield d
    d.stop()


def test_windows_are_cut_in_pauses_of_real_speech_never_inside_a_word():
    audio = jfk_times(6)  # 66 s: three windows
    pcm = decode_audio(audio)
    windower = Windower(default_detector("silero"))
    windows = list(windower.windows(stream_audio(audio)))
    cuts = [w.start for w in windows][1:]
    assert len(cuts) >= 2
    # Nothing lost or doubled at the edges: the windows are the recording, end to end.
    assert np.array_equal(np.concatenate([w.pcm for w in windows]), pcm)
    # Physics, not the detector's word: 100 ms around each cut is as quiet as the room
    # (JFK's recording has crowd noise and hiss between phrases), far below his voice.
    frames = pcm[: len(pcm) // 1600 * 1600].reshape(-1, 1600)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    voice = np.percentile(rms, 75)
    for cut in cuts:
        around = pcm[cut - 800 : cut + 800]
        assert np.sqrt(np.mean(around**2)) < 0.25 * voice, f"cut at {cut / 16000:.2f} s is not in a pause"


def test_the_window_path_says_the_words_of_the_whole_file_path(daemon, whole_daemon):
    audio = jfk_times(6)
    with Client(daemon.socket, timeout=300) as c:
        windowed = c.transcribe(audio)
    with Client(whole_daemon.socket, timeout=300) as c:
        whole = c.transcribe(audio)
    expected = " ".join([JFK_TEXT] * 6)
    assert word_recall(expected, windowed.text) >= 0.9
    assert word_recall(expected, windowed.text) >= word_recall(expected, whole.text) - 0.03
    assert windowed.transcript.duration == pytest.approx(66.0, abs=0.1)
    starts = [s.start for s in windowed.transcript.segments]
    assert starts == sorted(starts) and [s.id for s in windowed.transcript.segments] == list(range(len(starts)))
    assert windowed.transcript.segments[-1].end <= windowed.transcript.duration + 0.01


def test_progress_comes_window_by_window_in_order(daemon):
    frames: list[dict] = []
    with Client(daemon.socket, timeout=300) as c:
        reply = c.transcribe(jfk_times(6), progress=True, segments=True, on_frame=frames.append)
    progress = [f["fraction"] for f in frames if f.get("type") == "progress"]
    segments = [f["segment"] for f in frames if f.get("type") == "segment"]
    assert len(progress) >= 3 and progress == sorted(progress) and progress[-1] <= 1.0
    assert [s["id"] for s in segments] == list(range(len(reply.transcript.segments)))
    assert [s["start"] for s in segments] == [s.start for s in reply.transcript.segments]


def test_a_four_hour_silent_upload_is_answered_in_flat_memory(daemon):
    audio = four_hours("silence")
    with PeakMemory(daemon.proc.pid) as mem:
        with Client(daemon.socket, timeout=600) as c:
            reply = c.transcribe(audio)
    assert reply.text == "" and reply.transcript.duration == pytest.approx(FOUR_HOURS, abs=1)
    print(f"\n4 h of silence (FLAC, {len(audio) >> 10} KiB): daemon idle {mem.idle:.0f} MB, "
          f"peak {mem.peak:.0f} MB (+{mem.above_idle:.0f})")
    assert mem.above_idle <= MEMORY_GOAL_MB, f"{mem.above_idle:.0f} MB above idle"


async def test_two_four_hour_uploads_at_once_a_tone_and_silence_stay_in_flat_memory(daemon):
    tone, silence = four_hours("tone"), four_hours("silence")
    with PeakMemory(daemon.proc.pid) as mem:
        async with AsyncClient(daemon.socket, size=2) as c:
            replies = await asyncio.gather(c.transcribe(tone), c.transcribe(silence))
    for reply in replies:
        assert reply.text == ""  # a tone is no speech: the detector skips its windows
        assert reply.transcript.duration == pytest.approx(FOUR_HOURS, abs=60)
    print(f"\n4 h tone (MP3, {len(tone) >> 20} MiB) + 4 h silence at once: daemon idle {mem.idle:.0f} MB, "
          f"peak {mem.peak:.0f} MB (+{mem.above_idle:.0f})")
    assert mem.above_idle <= MEMORY_GOAL_MB, f"{mem.above_idle:.0f} MB above idle"


async def test_a_client_that_hangs_up_mid_file_stops_every_window(daemon):
    audio = jfk_times(24)  # 4.4 min: far more windows than lanes
    async with AsyncClient(daemon.socket, size=1) as c:
        task = asyncio.ensure_future(c.transcribe(audio))
        deadline = time.monotonic() + 120
        while status(daemon.socket).running == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert status(daemon.socket).running >= 1
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        s = status(daemon.socket)
        if s.running == 0 and s.queue == 0 and s.windowed == 0:
            break
        await asyncio.sleep(0.05)
    assert (s.running, s.queue, s.windowed) == (0, 0, 0)
    assert s.decoded_audio_reserved == 0
    # The daemon is fine: the next request is served.
    with Client(daemon.socket, timeout=300) as c:
        assert word_recall(JFK_TEXT, c.transcribe(JFK_FILE.read_bytes()).text) >= 0.8


def test_the_budget_refuses_a_whole_file_before_decoding_it(whole_daemon):
    # The whole-file path's one array for 4 hours is 0.9 GB: over the 256 MiB budget, refused
    # from the headers' duration, so the daemon never expands it.
    before = rss_mb(whole_daemon.proc.pid)
    with Client(whole_daemon.socket, timeout=300) as c:
        with pytest.raises(Overloaded, match="decoded-audio budget"):
            c.transcribe(four_hours("silence"))
    assert rss_mb(whole_daemon.proc.pid) - before < 100


def test_the_memory_goal_is_a_real_bound():
    # The whole-file path holds a 4-hour upload as one array: the same check must fail there,
    # or the flat-memory tests above prove nothing.
    d = Daemon("--engine", "faster-whisper", "--window-mode", "whole", "--max-cold-workers", "0",
               "--decoded-audio-budget", "2G")
    try:
        with PeakMemory(d.proc.pid) as mem:
            with Client(d.socket, timeout=600) as c:
                c.transcribe(four_hours("silence"))
        print(f"\nwhole-file path, 4 h of silence: daemon idle {mem.idle:.0f} MB, peak {mem.peak:.0f} MB "
              f"(+{mem.above_idle:.0f})")
        assert mem.above_idle > MEMORY_GOAL_MB
    finally:
        d.stop()

