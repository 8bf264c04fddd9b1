"""The scheduling policy, with no model: facts in, decision out."""

from __future__ import annotations

from whisperd.daemon.policy import (
    Facts,
    JobFacts,
    Settings,
    WorkerFacts,
    decide,
    job_order,
)

HOT = WorkerFacts("hot", "hot", "tiny.en", "idle")
S = Settings(max_cold_workers=2, long_audio_s=30, idle_timeout_s=60, reap_stagger_s=10)


def facts(jobs=(), workers=(HOT,), **kw) -> Facts:
    base = dict(cpu_cores=2, free_memory_mb=8000, worker_memory_mb={"tiny.en": 400, "base": 700},
                seconds_per_audio_s=0.05, load_s=1.0)
    base.update(kw)
    return Facts(tuple(jobs), tuple(workers), **base)


def job(id, secs, model="tiny.en", waited=0.0):
    return JobFacts(id, secs, model, waited)


def test_short_job_goes_to_the_idle_hot_worker():
    d = decide(facts([job("a", 3)]), S)
    assert d.assign == (("a", "hot"),) and d.spawn == ()


def test_shortest_first():
    d = decide(facts([job("long", 20), job("short", 2)]), S)
    assert d.assign[0] == ("short", "hot")


def test_ageing_lets_a_long_wait_win():
    order = job_order((job("new-short", 5), job("old-long", 25, waited=60)), ageing=0.5)
    assert order[0].id == "old-long"


def test_long_job_never_takes_the_hot_worker_when_a_cold_one_can():
    d = decide(facts([job("film", 600)]), S)
    assert d.assign == ()
    assert [m for m, _ in d.spawn] == ["tiny.en"]


def test_long_job_takes_the_hot_worker_when_no_cold_worker_is_possible():
    d = decide(facts([job("film", 600)]), Settings(max_cold_workers=0))
    assert d.assign == (("film", "hot"),)
    d = decide(facts([job("film", 600)], free_memory_mb=600), S)  # no memory for another model
    assert d.assign == (("film", "hot"),)


def test_long_job_goes_to_an_idle_cold_worker():
    cold = WorkerFacts("c1", "cold", "tiny.en", "idle")
    d = decide(facts([job("film", 600), job("cmd", 2)], workers=(HOT, cold)), S)
    assert set(d.assign) == {("film", "c1"), ("cmd", "hot")}


def test_command_while_hot_is_busy_spawns_a_cold_worker():
    busy = WorkerFacts("hot", "hot", "tiny.en", "busy", busy_remaining_s=30)
    d = decide(facts([job("cmd", 2)], workers=(busy,)), S)
    assert d.assign == () and len(d.spawn) == 1


def test_no_spawn_when_the_hot_worker_frees_up_sooner_than_a_load():
    busy = WorkerFacts("hot", "hot", "tiny.en", "busy", busy_remaining_s=0.3)
    d = decide(facts([job("cmd", 2)], workers=(busy,)), S)
    assert d.spawn == () and d.assign == ()


def test_a_loading_worker_never_holds_a_job_the_hot_worker_can_take_now():
    loading = WorkerFacts("c1", "cold", "tiny.en", "loading", busy_remaining_s=0.8)
    d = decide(facts([job("cmd", 2)], workers=(HOT, loading)), S)
    assert d.assign == (("cmd", "hot"),)


def test_spawns_are_capped_and_memory_bounded():
    busy = WorkerFacts("hot", "hot", "tiny.en", "busy", busy_remaining_s=60)
    c1 = WorkerFacts("c1", "cold", "tiny.en", "busy", busy_remaining_s=60)
    c2 = WorkerFacts("c2", "cold", "tiny.en", "busy", busy_remaining_s=60)
    assert decide(facts([job("x", 2)], workers=(busy, c1, c2)), S).spawn == ()
    assert decide(facts([job("x", 2)], workers=(busy,), free_memory_mb=700), S).spawn == ()


def test_one_spawn_per_model_per_decision():
    busy = WorkerFacts("hot", "hot", "tiny.en", "busy", busy_remaining_s=60)
    d = decide(facts([job("a", 2), job("b", 2), job("c", 3)], workers=(busy,)), S)
    assert len(d.spawn) == 1


def test_other_model_is_served_by_a_cold_worker():
    d = decide(facts([job("es", 4, model="base")]), S)
    assert d.assign == () and [m for m, _ in d.spawn] == ["base"]
    warm_base = WorkerFacts("c1", "cold", "base", "idle")
    d = decide(facts([job("es", 4, model="base")], workers=(HOT, warm_base)), S)
    assert d.assign == (("es", "c1"),)


def test_idle_cold_workers_are_reaped_one_at_a_time():
    c1 = WorkerFacts("c1", "cold", "tiny.en", "idle", idle_s=100)
    c2 = WorkerFacts("c2", "cold", "tiny.en", "idle", idle_s=70)
    d = decide(facts(workers=(HOT, c1, c2)), S)
    assert d.reap == ("c1",)
    d = decide(facts(workers=(HOT, c2), since_last_reap_s=2), S)
    assert d.reap == ()  # staggered
    d = decide(facts(workers=(HOT, c2), since_last_reap_s=20), S)
    assert d.reap == ("c2",)


def test_hot_worker_is_never_reaped_and_fresh_idle_workers_stay():
    c1 = WorkerFacts("c1", "cold", "tiny.en", "idle", idle_s=5)
    idle_hot = WorkerFacts("hot", "hot", "tiny.en", "idle", idle_s=1000)
    assert decide(facts(workers=(idle_hot, c1)), S).reap == ()


def test_a_cold_worker_gets_half_the_cores_beside_the_hot_worker():
    busy = WorkerFacts("hot", "hot", "tiny.en", "busy", busy_remaining_s=60)
    d = decide(facts([job("cmd", 2)], workers=(busy,)), S)
    assert d.spawn[0][1] == 1  # half of 2 cores beside the busy hot worker


def test_a_model_whose_cold_start_failed_gets_no_spawn_and_the_hot_worker_takes_long_work():
    f = facts([job("film", 600)], no_spawn_models=frozenset({"tiny.en"}))
    d = decide(f, S)
    assert d.spawn == () and d.assign == (("film", "hot"),)


def test_hot_layout_gives_each_slot_a_core_on_small_machines():
    from whisperd.daemon.policy import hot_layout

    assert hot_layout(cores=2, slots=0, threads=0, engine="faster-whisper", device="cpu") == (2, 1)
    assert hot_layout(cores=1, slots=0, threads=0, engine="faster-whisper", device="cpu") == (1, 1)
    assert hot_layout(cores=16, slots=0, threads=0, engine="faster-whisper", device="cpu") == (4, 4)
    # cpu_threads caps the hot worker's threads, shared by its slots
    assert hot_layout(cores=16, slots=0, threads=6, engine="faster-whisper", device="cpu") == (4, 1)
    assert hot_layout(cores=8, slots=2, threads=0, engine="faster-whisper", device="cpu") == (2, 4)


def test_hot_layout_keeps_one_slot_where_slots_would_not_help():
    from whisperd.daemon.policy import hot_layout

    assert hot_layout(cores=8, slots=0, threads=0, engine="faster-whisper", device="cuda") == (1, 8)
    assert hot_layout(cores=8, slots=3, threads=0, engine="openai-whisper", device="cpu") == (1, 8)


def test_two_idle_hot_slots_take_two_commands_and_no_worker_is_spawned():
    slots = (WorkerFacts("hot", "hot", "tiny.en", "idle"), WorkerFacts("hot-2", "hot", "tiny.en", "idle"))
    jobs = tuple(JobFacts(f"c{i}", 2.0, "tiny.en") for i in range(5))
    d = decide(Facts(jobs, slots, 2, 8000, {"tiny.en": 300}), Settings())
    assert sorted(wid for _, wid in d.assign) == ["hot", "hot-2"] and d.spawn == ()


def test_a_deep_queue_still_sees_the_other_models_job_at_its_end():
    # 200 commands for the busy hot worker, then one request for base: the commands are
    # settled after the first, and the base job behind them still gets its cold worker.
    busy = WorkerFacts("hot", "hot", "tiny.en", "busy", busy_remaining_s=0.1)
    jobs = [job(f"c{i}", 2.0) for i in range(200)] + [job("b", 2.0, model="base", waited=0.0)]
    d = decide(facts(jobs, (busy,)), S)
    assert d.assign == () and d.spawn == (("base", 1),)


# --- windows of a long recording -----------------------------------------------------------

HOT2 = WorkerFacts("hot-2", "hot", "tiny.en", "idle")


def window(id, remaining, secs=30.0, waited=0.0, request=None):
    return JobFacts(id, secs, "tiny.en", waited, request_s=request or remaining, remaining_s=remaining, window=True)


def test_a_window_starts_on_a_hot_slot_while_the_first_cold_lane_comes_up():
    d = decide(facts([window("w0", 600, request=600), window("w1", 570, request=600)], workers=(HOT, HOT2)), S)
    assert d.assign == (("w0", "hot"),)  # hot-2 kept idle for a command
    assert [m for m, _ in d.spawn] == ["tiny.en"]  # and a cold lane for the rest of the file


def test_a_command_takes_the_free_slot_before_any_window():
    busy = WorkerFacts("hot", "hot", "tiny.en", "busy", busy_remaining_s=1.0)
    d = decide(facts([window("w1", 570, waited=5), job("cmd", 3)], workers=(busy, HOT2)), S)
    assert d.assign == (("cmd", "hot-2"),)


def test_with_one_hot_slot_windows_follow_the_long_job_rule():
    d = decide(facts([window("w0", 600)], workers=(HOT,)), S)
    assert d.assign == () and len(d.spawn) == 1
    d = decide(facts([window("w0", 600)], workers=(HOT,)), Settings(max_cold_workers=0))
    assert d.assign == (("w0", "hot"),)


def test_windows_spread_over_idle_cold_lanes_and_leave_the_hot_slots_to_commands():
    c1, c2 = (WorkerFacts(i, "cold", "tiny.en", "idle") for i in ("c1", "c2"))
    d = decide(facts([window(f"w{i}", 600 - 30 * i, request=600) for i in range(4)],
                     workers=(HOT, HOT2, c1, c2), cpu_cores=8), S)
    # Cold workers are niced below the hot slots: a command arriving preempts them.
    assert {lane for _, lane in d.assign} == {"c1", "c2"}


def test_once_a_cold_lane_is_loading_windows_wait_for_it_not_for_a_hot_slot():
    loading = WorkerFacts("c1", "cold", "tiny.en", "loading", busy_remaining_s=0.5)
    d = decide(facts([window("w1", 570, request=600)], workers=(HOT, HOT2, loading)), S)
    assert d.assign == ()


def test_no_second_cold_spawn_for_the_rest_of_a_file_shorter_than_a_load():
    busy = WorkerFacts("c1", "cold", "tiny.en", "busy", busy_remaining_s=1.0)
    d = decide(facts([window("w1", 10, secs=10)], workers=(HOT, HOT2, busy), load_s=1.0, cpu_cores=8), S)
    assert d.assign == () and d.spawn == ()  # 10 s left × 0.05 s/s < a 1 s load


def test_no_cold_spawn_once_the_cold_lanes_use_every_core():
    cold = WorkerFacts("c1", "cold", "tiny.en", "busy", busy_remaining_s=1.0, threads=2)
    d = decide(facts([window("w2", 540)], workers=(HOT, HOT2, cold), cpu_cores=2), S)
    assert d.spawn == () and d.assign == ()  # two threads on windows already: more would contend


def test_windows_are_ordered_by_the_audio_their_request_has_left():
    order = job_order((window("film/000009", 60, request=330, waited=1), window("film/000010", 30, request=330),
                       window("talk/000000", 60, waited=1), job("cmd", 3)), ageing=0.5)
    # Shortest request first; within a request, its windows in order.
    assert [j.id for j in order] == ["cmd", "talk/000000", "film/000009", "film/000010"]


def test_with_one_hot_slot_a_short_remainder_still_gets_a_cold_lane():
    # Nothing else could ever take it (the slot is kept for commands): spawn, however short.
    d = decide(facts([window("w0", 20, secs=20)], workers=(HOT,), load_s=5.0), S)
    assert d.assign == () and len(d.spawn) == 1


def test_an_idle_cold_lane_of_another_model_makes_room_for_a_model_with_no_lane():
    c1, c2 = (WorkerFacts(i, "cold", "tiny.en", "idle", idle_s=1.0) for i in ("c1", "c2"))
    d = decide(facts([job("es", 10, model="base")], workers=(HOT, c1, c2)), S)
    assert d.spawn == () and len(d.reap) == 1  # not after the 60 s idle timeout: now
