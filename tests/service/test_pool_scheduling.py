"""`Pool` in-process: which job runs where and when, on fake lanes and on the null engine."""

from __future__ import annotations

import asyncio
import gc

import pytest

from tests.service.pool_fakes import (
    MODEL,
    answer,
    job,
    make_pool,
    submit,
    transcript,
    until,
    wav,
)
from whisperd.core.errors import Overloaded
from whisperd.daemon.lanes.base import LaneState
from whisperd.daemon.lanes.hot import HotLane, hot_lanes
from whisperd.engines import load_engine


async def test_shortest_audio_runs_first():
    pool, _ = make_pool(max_cold_workers=0)
    hot = pool.hot[0]
    first = submit(pool, job("first"), 4)
    running, done = await hot.next_job()
    assert running.id == "first"
    waiting = [submit(pool, job("three"), 3), submit(pool, job("one"), 1), submit(pool, job("two"), 2)]
    await until(lambda: len(pool.pending) == 3, "three queued jobs")
    order = []
    done.set_result(transcript())
    for _ in range(3):
        running, done = await hot.next_job()
        order.append(running.id)
        done.set_result(transcript())
    assert order == ["one", "two", "three"]
    assert [lane for _, lane in await answer(asyncio.gather(first, *waiting))] == ["hot"] * 4


async def test_a_long_job_goes_to_a_cold_lane_while_commands_keep_the_hot_one():
    pool, factory = make_pool()  # long_audio_seconds 5
    hot = pool.hot[0]
    long_task = submit(pool, job("film"), 6)
    cold = await factory.next_lane()
    film, film_done = await cold.next_job()
    assert film.id == "film" and hot.jobs == []
    command = submit(pool, job("cmd"), 1)
    cmd, cmd_done = await hot.next_job()
    assert cmd.id == "cmd"
    cmd_done.set_result(transcript("command"))
    assert (await answer(command))[1] == "hot" and not long_task.done()
    film_done.set_result(transcript("film"))
    result, lane_name = await answer(long_task)
    assert lane_name == cold.id == "cold-1" and result.text == "film"
    status = pool.status()
    assert status["spawns"] == status["counters"]["spawns"] == 1
    assert [lane["kind"] for lane in status["lanes"]] == ["hot", "cold"]


async def test_a_long_job_takes_the_hot_lane_when_no_cold_lane_may_start():
    pool, factory = make_pool(max_cold_workers=0)
    task = submit(pool, job("film"), 6)
    film, done = await pool.hot[0].next_job()
    done.set_result(transcript())
    assert (await answer(task))[1] == "hot" and factory.lanes == []


async def test_a_claimed_lane_is_busy_before_its_job_starts_and_idle_after():
    pool, _ = make_pool(max_cold_workers=0)
    hot = pool.hot[0]
    task = submit(pool, job("a"), 1)
    await until(lambda: pool.running, "the job to be assigned")
    assert hot.jobs == [] and hot.state is LaneState.BUSY  # claimed: taken before its run begins
    assert pool.status()["lanes"][0]["state"] == "busy"
    with pytest.raises(RuntimeError):
        hot.claim(0.0)  # taken: a second claim is a bug, not a second job
    _, done = await hot.next_job()
    done.set_result(transcript())
    await answer(task)
    assert hot.state is LaneState.IDLE and hot.served == 1


async def test_a_full_queue_refuses_with_overloaded():
    pool, _ = make_pool(max_cold_workers=0, queue_size=2)
    hot = pool.hot[0]
    running = submit(pool, job("running"), 1)
    _, done = await hot.next_job()
    queued = submit(pool, job("queued"), 1)
    await until(lambda: len(pool.pending) == 1, "the second job queued")
    with pytest.raises(Overloaded):
        await pool.submit(job("refused"), wav(1))
    done.set_result(transcript())
    _, done = await hot.next_job()
    done.set_result(transcript())
    await answer(asyncio.gather(running, queued))
    assert [j.id for j in hot.jobs] == ["running", "queued"]


async def test_the_encoded_audio_is_let_go_once_decoded():
    pool, _ = make_pool(max_cold_workers=0)
    audio = wav(1)
    task = asyncio.ensure_future(pool.submit(job("a"), audio))
    _, done = await pool.hot[0].next_job()
    coroutine = task.get_coro()
    assert coroutine not in gc.get_referrers(audio)  # the waiting submit holds only the samples
    done.set_result(transcript())
    await answer(task)


async def test_hot_lanes_over_the_null_engine_serve_end_to_end():
    engine = load_engine("null", MODEL)
    lanes = hot_lanes(engine, MODEL.name)
    assert all(isinstance(lane, HotLane) for lane in lanes)
    pool, _ = make_pool(lanes, max_cold_workers=0)
    assert pool.engine is engine  # the hot lanes' own
    results = await asyncio.gather(*(pool.submit(job(f"j{i}"), wav(2)) for i in range(5)))
    assert [lane for _, lane in results] == ["hot"] * 5
    assert all(t.duration == pytest.approx(2.0) for t, _ in results)
    assert sum(lane.served for lane in lanes) == 5
    assert all(lane.state is LaneState.IDLE for lane in lanes)


async def test_the_hot_engine_and_every_cold_lane_add_to_the_counters():
    pool, factory = make_pool()
    pool.engine.counted.update(short_path_answers=3)
    task = submit(pool, job("film"), 6)
    cold = await factory.next_lane()
    _, done = await cold.next_job()
    cold.engine_counts.update(short_path_answers=2, short_path_fallback_repetition=1)
    done.set_result(transcript())
    await answer(task)
    counters = pool.status()["counters"]
    assert counters["short_path_answers"] == 5 and counters["short_path_fallback_repetition"] == 1
    cold.close()  # it exits: what it counted stays in the totals
    await until(lambda: not pool.cold, "the cold lane to be gone")
    counters = pool.status()["counters"]
    assert counters["short_path_answers"] == 5 and counters["short_path_fallback_repetition"] == 1
    assert counters["crashes"] == 0

