"""`Pool` in-process: clients that go away, lanes that fail, time out or cannot start."""

from __future__ import annotations

import asyncio

import pytest

from tests.service.pool_fakes import (
    FakeClock,
    answer,
    job,
    make_pool,
    submit,
    transcript,
    until,
)
from whisperd.core.errors import JobCancelled, WorkerFailed, WorkerTimeout
from whisperd.daemon.pool import SPAWN_BACKOFF_S


async def test_a_client_that_goes_away_while_queued_is_dropped_before_it_runs():
    pool, _ = make_pool(max_cold_workers=0)
    hot = pool.hot[0]
    first = submit(pool, job("first"), 2)
    _, done = await hot.next_job()
    gone = submit(pool, job("gone"), 1)
    await until(lambda: len(pool.pending) == 1, "the second job queued")
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await answer(gone)
    assert pool.pending == [] and pool.status()["counters"]["dropped_queued"] == 1
    done.set_result(transcript())
    await answer(first)
    assert [j.id for j in hot.jobs] == ["first"] and hot.started.empty()
    assert pool.status()["counters"]["dropped_running"] == 0


async def test_a_client_that_goes_away_while_running_is_cancelled_on_its_lane():
    pool, _ = make_pool(max_cold_workers=0)
    hot = pool.hot[0]
    task = submit(pool, job("gone"), 2)
    running, stopped = await hot.next_job()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await answer(task)
    assert hot.cancelled == [running] and running.cancelled
    assert pool.status()["counters"]["dropped_running"] == 1
    stopped.set_exception(JobCancelled("the client went away"))  # the lane stops at its next segment
    await until(lambda: not pool.running, "the lane to let the job go")
    assert pool.status()["counters"]["dropped_queued"] == 0 and pool.status()["counters"]["retries"] == 0


async def test_a_failed_lane_is_retried_once_on_another_and_the_second_failure_reaches_the_caller():
    pool, factory = make_pool()
    task = submit(pool, job("film"), 6)  # long: a cold lane's
    first = await factory.next_lane()
    attempt, done = await first.next_job()
    first.die()  # kill -9: the lane is gone mid-job
    done.set_exception(WorkerFailed(f"worker {first.id} exited while serving the request"))
    second = await factory.next_lane()
    retried, done = await second.next_job()
    assert retried is attempt and retried.retries == 1
    assert pool.status()["counters"]["retries"] == 1
    done.set_exception(WorkerFailed(f"worker {second.id} exited while serving the request"))
    with pytest.raises(WorkerFailed, match=second.id):
        await answer(task)
    counters = pool.status()["counters"]
    assert counters["retries"] == 1 and counters["crashes"] == 1 and counters["timeouts"] == 0
    assert pool.hot[0].jobs == []


async def test_a_retry_succeeds_on_the_other_lane():
    pool, factory = make_pool()
    task = submit(pool, job("film"), 6)
    first = await factory.next_lane()
    _, done = await first.next_job()
    first.die()
    done.set_exception(WorkerFailed("exited while serving the request"))
    second = await factory.next_lane()
    _, done = await second.next_job()
    done.set_result(transcript("second time"))
    result, lane = await answer(task)
    assert result.text == "second time" and lane == second.id


async def test_a_timed_out_lane_is_not_retried():
    pool, factory = make_pool()
    task = submit(pool, job("film"), 6)
    lane = await factory.next_lane()
    _, done = await lane.next_job()
    lane.die()  # a timed-out cold lane is killed
    done.set_exception(WorkerTimeout(f"worker {lane.id} took longer than 300 s and was stopped"))
    with pytest.raises(WorkerTimeout, match="longer than 300 s"):
        await answer(task)
    counters = pool.status()["counters"]
    assert counters["timeouts"] == 1 and counters["retries"] == 0
    assert len(factory.lanes) == 1 and pool.hot[0].jobs == []


async def test_a_model_whose_cold_lane_cannot_start_is_answered_and_backed_off():
    clock = FakeClock()
    pool, factory = make_pool(clock=clock)
    factory.fail_next_start = WorkerFailed("could not load base: no such file")
    task = submit(pool, job("es", model="base"), 2)  # only a cold lane can serve another model
    failed = await factory.next_lane()
    with pytest.raises(WorkerFailed, match="no worker could load model base: could not load base"):
        await answer(task)
    assert failed.fatal is not None and failed.jobs == []
    assert pool.status()["counters"]["crashes"] == 1 and not pool.cold
    again = submit(pool, job("es-2", model="base"), 2)
    await until(lambda: len(pool.pending) == 1, "the second job queued")
    pool.tick()
    assert len(factory.lanes) == 1  # backed off: no spawn loop
    clock.advance(SPAWN_BACKOFF_S + 1)
    pool.tick()
    lane = await factory.next_lane()
    _, done = await lane.next_job()
    done.set_result(transcript())
    assert (await answer(again))[1] == lane.id
