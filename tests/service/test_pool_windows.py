"""Long recordings as chains of windows, in the pool, with fake lanes the test finishes.

The windows come from the real cutter (energy detector: no model) over audio of
tone bursts and pauses; the lanes are fakes, so the test decides which window
finishes when - out of order, failed, or never.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.service.pool_fakes import GUARD_S, FakeLane, job, make_pool
from tests.stack.reliability import media
from whisperd.core.errors import Overloaded, WorkerFailed
from whisperd.core.transcript import Segment, Transcript


def bursts(seconds: float) -> bytes:
    """A 16 kHz WAV of 0.8 s tone bursts with 0.4 s pauses: 'speech' with pauses to cut at."""
    t = np.arange(int(seconds * 16000)) / 16000
    on = (t % 1.2) < 0.8
    pcm = (0.3 * np.sin(2 * np.pi * 220 * t) * on * 32767).astype("<i2")
    return media.wav(pcm.tobytes())


def said(text: str, start: float = 0.5, end: float = 1.5) -> Transcript:
    seg = Segment(0, 0, start, end, " " + text)
    return Transcript(" " + text, "en", 30.0, (seg,), "transcribe")


async def until(predicate, what: str = "the condition") -> None:
    """Wait for `predicate`: windows are cut on decode threads, so the loop alone cannot get there."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + GUARD_S  # a guard against a hang, not a timing assumption
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"{what} did not happen")
        await asyncio.sleep(0.005)


async def answer(task):
    await until(task.done, "the caller's answer")
    return task.result()


def three_slots():
    return [FakeLane("hot"), FakeLane("hot-2"), FakeLane("hot-3")]


def windowed_pool(**settings):
    return make_pool(three_slots(), max_cold_workers=0, window_vad="energy", **settings)


async def test_windows_finishing_out_of_order_reach_the_client_in_order():
    pool, _ = windowed_pool()
    hot, hot2, hot3 = pool.hot
    request = job("film")
    heard: list[tuple[str, float, float]] = []
    request.on_segment = lambda seg, fraction: heard.append((seg.text, seg.start, fraction))
    task = asyncio.ensure_future(pool.submit(request, bursts(70)))

    w0, finish0 = await hot.next_job()
    w1, finish1 = await hot2.next_job()
    assert hot3.jobs == []  # the last idle slot stays free for a command
    assert (w0.id, w1.id) == ("film/000000", "film/000001")
    assert 20 <= w0.audio_seconds <= 30 and w0.options.short_path is False

    finish1.set_result(said("two"))
    await until(lambda: hot2.state.value == "idle" or len(hot2.jobs) == 2, "window 1 done")
    assert heard == []  # window 1 is done, but window 0 is not: nothing goes out yet
    finish0.set_result(said("one"))
    await until(lambda: len(heard) == 2, "windows 0 and 1 emitted")
    assert [h[0] for h in heard] == [" one", " two"]
    assert heard[0][1] == 0.5 and heard[1][1] == pytest.approx(0.5 + w0.audio_seconds, abs=0.01)
    assert heard[0][2] < heard[1][2] < 1.0  # progress grows window by window

    # The last window lands on whichever slot took it.
    w2, finish2 = await next_started([hot, hot2])
    finish2.set_result(said("three"))
    result, worker = await answer(task)
    assert result.text == "one two three"
    assert [s.id for s in result.segments] == [0, 1, 2]
    assert result.duration == pytest.approx(70.0, abs=0.01)
    assert worker == "hot"
    assert pool.reserved_bytes == 0 and not pool.requests and not pool.pending


async def next_started(lanes):
    getters = [asyncio.ensure_future(lane.next_job()) for lane in lanes]
    done, pending = await asyncio.wait(getters, return_when=asyncio.FIRST_COMPLETED)
    for g in pending:
        g.cancel()
    return next(iter(done)).result()


async def film_on_two_slots(seconds: float):
    """A windowed pool running a film's first two windows: (pool, task, (w0, finish0), (w1, finish1))."""
    pool, _ = windowed_pool()
    hot, hot2, _ = pool.hot
    task = asyncio.ensure_future(pool.submit(job("film"), bursts(seconds)))
    return pool, task, await hot.next_job(), await hot2.next_job()


async def test_a_client_that_hangs_up_mid_file_frees_every_window():
    pool, task, (w0, _), (w1, _) = await film_on_two_slots(300)
    hot, hot2, _ = pool.hot
    await until(lambda: len(pool.pending) >= 1, "windows queued behind the running ones")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert w0 in hot.cancelled and w1 in hot2.cancelled  # the running windows are stopped
    assert pool.pending == []  # the queued ones dropped
    await until(lambda: not pool.requests and pool.reserved_bytes == 0, "the request forgotten")
    counters = pool.status()["counters"]
    assert counters["dropped_running"] == 2 and counters["dropped_queued"] >= 1
    await asyncio.sleep(0)
    assert len(hot.jobs) + len(hot2.jobs) == 2  # and no window of it starts afterwards


async def test_a_failed_window_is_retried_once_and_the_file_completes():
    pool, task, (w0, finish0), (w1, finish1) = await film_on_two_slots(45)
    hot2 = pool.hot[1]
    finish1.set_exception(WorkerFailed("worker cold-1 exited while serving the request"))
    retried, finish_retry = await next_started([hot2])
    assert retried.id == w1.id and retried.retries == 1
    finish_retry.set_result(said("two"))
    finish0.set_result(said("one"))
    result, _ = await answer(task)
    assert result.text == "one two"
    assert pool.status()["counters"]["retries"] == 1


async def test_a_window_that_fails_for_good_fails_the_request_and_stops_the_rest():
    pool, task, (w0, _), (w1, finish1) = await film_on_two_slots(300)
    hot = pool.hot[0]
    finish1.set_exception(ValueError("engine bug"))
    with pytest.raises(ValueError):
        await answer(task)
    assert w0 in hot.cancelled and pool.pending == []
    await until(lambda: not pool.requests and pool.reserved_bytes == 0, "the request forgotten")


async def test_the_decoded_audio_budget_refuses_a_request_before_it_is_exceeded():
    # One long request reserves (lookahead + 2) windows of float32: 3 slots → 5 × 30 s × 64 KB ≈ 9.6 MB.
    pool, _ = windowed_pool(decoded_audio_budget="12M")
    hot, _, _ = pool.hot
    first = asyncio.ensure_future(pool.submit(job("film"), bursts(300)))
    await hot.next_job()
    with pytest.raises(Overloaded, match="decoded-audio budget"):
        await pool.submit(job("another-film"), bursts(300))
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    await until(lambda: pool.reserved_bytes == 0, "the budget given back")


async def test_a_recording_without_speech_costs_no_window():
    pool, _ = windowed_pool()
    silence = media.wav(b"\0\0" * 16000 * 120)
    result, worker = await answer(asyncio.ensure_future(pool.submit(job("quiet"), silence)))
    assert result.text == "" and result.segments == () and result.duration == pytest.approx(120.0)
    assert all(lane.jobs == [] for lane in pool.hot) and worker == "none"


async def test_whole_mode_keeps_one_job_per_file():
    pool, _ = make_pool(three_slots(), max_cold_workers=0, window_mode="whole")
    hot = pool.hot[0]
    task = asyncio.ensure_future(pool.submit(job("film"), bursts(70)))
    whole, finish = await hot.next_job()
    assert whole.id == "film" and whole.audio_seconds == pytest.approx(70.0)
    finish.set_result(said("all of it"))
    result, worker = await answer(task)
    assert result.text == " all of it" and worker == "hot"
