"""`Pool` in-process: drain, idle cold lanes, and a real cold lane process on the null engine."""

from __future__ import annotations

import asyncio
import multiprocessing
import time

import numpy as np
import pytest

from tests.service.pool_fakes import (
    MODEL,
    FakeClock,
    answer,
    job,
    make_pool,
    submit,
    transcript,
    until,
    wav,
)
from whisperd.core.errors import ShuttingDown, WorkerTimeout
from whisperd.daemon.lanes.base import LaneState
from whisperd.daemon.lanes.cold import ColdLane, job_timeout
from whisperd.engines.null import NullEngine

# --- drain -------------------------------------------------------------------------------


async def test_drain_finishes_running_and_queued_work_within_its_grace():
    pool, _ = make_pool(max_cold_workers=0)
    hot = pool.hot[0]
    running = submit(pool, job("running"), 2)
    _, done = await hot.next_job()
    queued = submit(pool, job("queued"), 1)
    await until(lambda: len(pool.pending) == 1, "the second job queued")
    drain = asyncio.ensure_future(pool.drain(grace=30))
    done.set_result(transcript("first"))
    _, done = await hot.next_job()
    done.set_result(transcript("second"))
    await asyncio.wait_for(drain, 10)
    assert [r.text for r, _ in await answer(asyncio.gather(running, queued))] == ["first", "second"]
    assert hot.closed and hot.state is LaneState.STOPPING


async def test_drain_past_its_grace_refuses_queued_work_and_lets_running_work_finish():
    pool, _ = make_pool(max_cold_workers=0)
    hot = pool.hot[0]
    running = submit(pool, job("running"), 2)
    _, done = await hot.next_job()
    queued = submit(pool, job("queued"), 1)
    await until(lambda: len(pool.pending) == 1, "the second job queued")
    await pool.drain(grace=0)
    with pytest.raises(ShuttingDown):
        await answer(queued)
    assert [j.id for j in hot.jobs] == ["running"] and hot.closed
    done.set_result(transcript("finished"))  # the lane lets its job finish after close()
    assert (await answer(running))[0].text == "finished"
    with pytest.raises(ShuttingDown):
        await pool.submit(job("late"), wav(1))


async def test_drain_stops_cold_lanes_and_their_exit_is_no_crash():
    pool, factory = make_pool()
    task = submit(pool, job("film"), 6)
    cold = await factory.next_lane()
    _, done = await cold.next_job()
    done.set_result(transcript())
    await answer(task)
    await pool.drain(grace=5)
    await until(lambda: not pool.cold, "the cold lane to be gone")
    assert cold.closed and cold.state is LaneState.DEAD
    assert pool.status()["counters"]["crashes"] == 0 and pool.status()["counters"]["idle_exits"] == 0


# --- idle cold lanes ---------------------------------------------------------------------


async def test_an_idle_cold_lane_is_reaped_after_the_idle_timeout():
    clock = FakeClock()
    pool, factory = make_pool(clock=clock, worker_idle_timeout=60)
    task = submit(pool, job("film"), 6)
    cold = await factory.next_lane()
    _, done = await cold.next_job()
    done.set_result(transcript())
    await answer(task)
    clock.advance(30)
    pool.tick()
    assert not cold.closed and pool.status()["counters"]["idle_exits"] == 0
    clock.advance(31)  # idle 61 s
    pool.tick()
    assert cold.closed and pool.status()["counters"]["idle_exits"] == 1
    await until(lambda: not pool.cold, "the reaped lane to be gone")
    status = pool.status()
    assert status["workers"]["cold"] == 0 and status["counters"]["crashes"] == 0
    assert pool.hot[0].closed is False  # the hot lane is never reaped


async def test_idle_cold_lanes_are_reaped_one_at_a_time():
    clock = FakeClock()
    pool, factory = make_pool(clock=clock, worker_idle_timeout=60)  # stagger: 10 s
    tasks = [submit(pool, job("film-1"), 6), submit(pool, job("film-2"), 7)]
    lanes = [await factory.next_lane(), await factory.next_lane()]
    for lane in lanes:
        _, done = await lane.next_job()
        done.set_result(transcript())
    await answer(asyncio.gather(*tasks))
    clock.advance(100)
    pool.tick()
    pool.tick()
    assert sum(lane.closed for lane in lanes) == 1
    clock.advance(10)
    pool.tick()
    assert all(lane.closed for lane in lanes) and pool.status()["counters"]["idle_exits"] == 2


# --- a real cold lane: a child process on the null engine --------------------------------


def test_the_per_job_timeout_is_worker_timeout_per_minute_of_audio_at_least_one_minute():
    assert job_timeout(300, 10) == 300
    assert job_timeout(300, 60) == 300
    assert job_timeout(300, 150) == 750
    assert job_timeout(0.5, 32) == 0.5


def cold_lane(**kw) -> ColdLane:
    # fork: the child starts at once and shares this process's classes (so a patched engine).
    return ColdLane("cold-t", MODEL, engine="null", device="cpu", compute_type="auto", threads=1,
                    cache_dir="/nonexistent", context=multiprocessing.get_context("fork"), **kw)


async def test_a_cold_lane_process_serves_and_reports_its_engines_counters(monkeypatch):
    monkeypatch.setattr(NullEngine, "counters", lambda self: {"short_path_answers": 7}, raising=False)
    lane = cold_lane()
    assert lane.state is LaneState.LOADING
    await asyncio.wait_for(lane.start(), 30)
    try:
        assert lane.state is LaneState.IDLE and lane.pid and lane.status()["pid"] == lane.pid
        lane.claim(0.0)
        result = await asyncio.wait_for(lane.run(job("a"), np.zeros(16000, np.float32)), 30)
        assert result.duration == pytest.approx(1.0)
        assert lane.state is LaneState.IDLE and lane.served == 1
        assert lane.counters() == {"short_path_answers": 7}
    finally:
        lane.close()
        await lane.wait_closed(5)
    assert lane.state is LaneState.DEAD and lane.closing and lane.exit_code is not None


async def test_a_cold_lane_past_its_deadline_raises_worker_timeout_and_is_killed(monkeypatch):
    # The forked child decodes for a minute (the null engine would answer at once, and an answer
    # that arrives while the audio is still being sent would beat even a microsecond's deadline).
    monkeypatch.setattr(NullEngine, "transcribe", lambda self, *a, **k: time.sleep(60))
    lane = cold_lane(worker_timeout=1e-6)
    await asyncio.wait_for(lane.start(), 30)
    try:
        a = job("a")
        a.audio_seconds = 1.0
        with pytest.raises(WorkerTimeout, match="took longer than 0 s and was stopped"):
            await lane.run(a, np.zeros(16000, np.float32))
        await asyncio.wait_for(lane.exited(), 10)
        assert lane.state is LaneState.DEAD and lane.closing  # killed on purpose: its exit is no crash
    finally:
        await lane.wait_closed(5)
