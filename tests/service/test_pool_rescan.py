"""A rescan changes what the pool serves while it runs (`Pool.set_models`), with no restart."""

from __future__ import annotations

import pytest

from tests.service.pool_fakes import BASE, MODEL, FakeResources, answer, job, make_pool, submit, until
from whisperd.core.errors import ModelNotFound, WorkerFailed


async def test_a_model_removed_while_its_job_waits_gets_an_answer_not_a_crash():
    pool, factory = make_pool(max_cold_workers=1)
    pool.resources = FakeResources(free_mb=0.0)  # no room for a cold lane yet: the base job waits
    waiting = submit(pool, job("b", model="base"), 1)
    await until(lambda: len(pool.pending) == 1, "the base job queued")
    pool.set_models({"tiny.en": MODEL})  # a rescan: base was removed from the models folder
    pool.resources = FakeResources()  # room now: the policy would start a lane for base
    pool.tick()
    with pytest.raises(WorkerFailed, match="removed"):
        await answer(waiting)
    assert factory.lanes == [] and pool.cold == {} and pool.pending == []  # no lane started for it
    with pytest.raises(ModelNotFound):
        await pool.submit(job("again", model="base"), b"")


async def test_a_model_added_by_a_rescan_is_served_from_the_next_request():
    pool, factory = make_pool(max_cold_workers=1)
    pool.set_models({"tiny.en": MODEL})
    with pytest.raises(ModelNotFound):
        await pool.submit(job("early", model="base"), b"")
    pool.set_models({"tiny.en": MODEL, "base": BASE})
    task = submit(pool, job("b", model="base"), 1)
    lane = await factory.next_lane()
    assert lane.model == "base"  # a cold lane starts for the model that was not there before
    task.cancel()
    await until(task.done, "the cancelled request")
