"""Scheduling as a pure function: facts in, decision out. No model, no clock, no I/O.

The rules, in order of importance:

1. Live speech first: a live final (someone has stopped talking and waits for
   it), then a live partial (someone is mid-sentence). Then shortest audio first (with ageing, so a long file
   is not starved forever).
2. A job is bound to a worker only when that worker is idle and ready: a worker
   still loading never holds a request the hot worker would finish sooner.
3. The hot worker is kept for short work: a long job (> `long_audio_s`) is not
   started on the hot worker while a cold worker could take it - one is idle,
   loading or may be spawned - so a voice command never waits behind it.
   A window of a long recording (a job with `window`) runs on cold workers,
   which are niced below the hot worker, so a command preempts them. Until the
   first cold worker is up (or where none may start) it may take a hot slot, as
   long as another hot slot stays idle for commands; with a single slot, it
   follows the long-job rule.
4. A cold worker is spawned when a queued job would finish sooner on a new
   worker (load time + its cost) than on any existing lane, within the cap and
   the free memory; it gets half the cores, as it runs beside the hot worker.
   For windows the measure is the request's remaining audio: a spawn pays off
   when the rest of the recording takes longer than a load, and while the
   cold lanes use fewer threads than there are cores.
5. Idle cold workers exit after `idle_timeout_s`, at most one every
   `reap_stagger_s`, so a burst does not end in a cliff of exits. An idle one
   exits at once when another model's work waits with no lane and no room.
"""

from __future__ import annotations

from dataclasses import dataclass


LIVE_PARTIAL, LIVE_FINAL = 1, 2


@dataclass(frozen=True)
class JobFacts:
    id: str
    audio_s: float
    model: str
    waited_s: float = 0.0
    # A window of a long recording: `request_s` is its whole request's audio (the order:
    # shortest request first), `remaining_s` what the request has left from this window on.
    request_s: float | None = None
    remaining_s: float = 0.0
    window: bool = False
    live: int = 0  # a live session's decode, before everything else: LIVE_FINAL, then LIVE_PARTIAL

    @property
    def order_s(self) -> float:
        return self.audio_s if self.request_s is None else self.request_s


@dataclass(frozen=True)
class WorkerFacts:
    id: str
    kind: str  # "hot" | "cold"
    model: str
    state: str  # "idle" | "busy" | "loading"
    busy_remaining_s: float = 0.0  # estimated seconds until busy/loading ends
    idle_s: float = 0.0  # how long it has been idle
    threads: int = 1  # CPU threads it decodes with


@dataclass(frozen=True)
class Facts:
    jobs: tuple[JobFacts, ...]
    workers: tuple[WorkerFacts, ...]
    cpu_cores: int
    free_memory_mb: float
    worker_memory_mb: dict[str, float]  # estimated resident size of one worker, by model
    seconds_per_audio_s: float = 0.05  # measured processing cost per second of audio
    load_s: float = 1.0  # measured cold spawn-to-ready
    since_last_reap_s: float = 1e9
    # Models whose last cold start failed recently: no spawns for them for a while.
    no_spawn_models: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Settings:
    max_cold_workers: int = 2
    memory_reserve_mb: float = 512.0
    long_audio_s: float = 30.0
    idle_timeout_s: float = 60.0
    reap_stagger_s: float = 10.0
    ageing: float = 0.5  # one second waited counts as this many seconds less audio


@dataclass(frozen=True)
class Decision:
    assign: tuple[tuple[str, str], ...] = ()  # (job id, worker id)
    spawn: tuple[tuple[str, int], ...] = ()  # (model, cpu threads)
    reap: tuple[str, ...] = ()  # cold worker ids to stop


def job_order(jobs: tuple[JobFacts, ...], ageing: float) -> list[JobFacts]:
    return sorted(jobs, key=lambda j: (-j.live, j.order_s - ageing * j.waited_s, j.waited_s * -1, j.id))


# More slots than this gain little: each needs a core, and single requests slow down.
MAX_AUTO_HOT_SLOTS = 4


def hot_layout(*, cores: int, slots: int, threads: int, engine: str, device: str) -> tuple[int, int]:
    """(slots, CPU threads per slot) for the hot worker; 0 in a setting means auto.

    Several slots decode at once on one copy of the model (CTranslate2's
    inter_threads), one thread each by default: on 2 cores, two 1-thread slots
    decoded a command in 124 ms (one 2-thread decode: 147 ms) and a burst of 12
    in 1.19 s (2.0-4.5 s), docs/performance.md section "slots". openai-whisper decodes one
    request at a time (its kv-cache hooks live on the shared model); on CUDA
    each slot would be another copy of the weights in VRAM, so one.

    >>> hot_layout(cores=2, slots=0, threads=0, engine="faster-whisper", device="cpu")
    (2, 1)
    >>> hot_layout(cores=16, slots=0, threads=0, engine="faster-whisper", device="cpu")
    (4, 4)
    >>> hot_layout(cores=8, slots=0, threads=0, engine="openai-whisper", device="cpu")
    (1, 8)
    """
    cores, total = max(1, cores), threads or max(1, cores)
    if engine == "openai-whisper":
        return 1, total
    if slots <= 0:
        slots = 1 if device == "cuda" else min(MAX_AUTO_HOT_SLOTS, total)
    return slots, max(1, total // slots)


def decide(facts: Facts, settings: Settings) -> Decision:
    idle = {w.id: w for w in facts.workers if w.state == "idle"}
    cold = [w for w in facts.workers if w.kind == "cold"]
    free_mb = facts.free_memory_mb
    cold_slots = settings.max_cold_workers - len(cold)
    assign: list[tuple[str, str]] = []
    spawn: list[tuple[str, int]] = []
    # Lanes that are busy or loading, with when they free up (for rule 4's comparison).
    pending_free = {w.id: w.busy_remaining_s for w in facts.workers if w.state != "idle"}

    # (model, long?) classes that can get nothing more in this decision: idle lanes only
    # run out as the loop goes on, so every later job of the class would be skipped anyway.
    # Keeps a decision over a deep queue linear in the jobs (the framework's ceiling).
    settled: set[tuple[str, bool]] = set()
    cold_threads = max(1, facts.cpu_cores // 2)
    for job in job_order(facts.jobs, settings.ageing):
        long_job = job.window or job.audio_s > settings.long_audio_s
        if (job.model, long_job) in settled:
            continue
        cost = job.audio_s * facts.seconds_per_audio_s
        lanes = [w for w in facts.workers if w.model == job.model]
        can_spawn = (job.model not in facts.no_spawn_models and cold_slots > 0
                     and free_mb - facts.worker_memory_mb.get(job.model, 1e9) >= settings.memory_reserve_mb)
        cold_possible = can_spawn or any(w.kind == "cold" for w in lanes)
        hot_slots = sum(1 for w in lanes if w.kind == "hot")

        candidates = [w for w in lanes if w.id in idle]
        spawned_for_model = sum(1 for m, _ in spawn if m == job.model)
        cold_lanes = [w for w in lanes if w.kind == "cold"]
        if job.window and (cold_lanes or spawned_for_model or (hot_slots < 2 and cold_possible)):
            # Windows run on cold workers (niced: a command on the hot slots preempts them)...
            candidates = [w for w in candidates if w.kind == "cold"]
        elif job.window and hot_slots >= 2:
            # ...and start on a hot slot only until one is up, or where none may be; the last
            # idle hot slot stays free for a command.
            if sum(1 for w in candidates if w.kind == "hot") < 2:
                candidates = [w for w in candidates if w.kind == "cold"]
        elif long_job and cold_possible:
            candidates = [w for w in candidates if w.kind == "cold"]  # rule 3
        # Short work prefers the hot worker; long work a cold one.
        candidates.sort(key=lambda w: (w.kind != ("cold" if long_job else "hot"), w.id))
        if candidates:
            chosen = candidates[0]
            assign.append((job.id, chosen.id))
            del idle[chosen.id]
            pending_free[chosen.id] = cost
            continue
        if job.window:
            # With no cold lane yet, a new one is the way; else, would another pay off? The rest of
            # the recording must outlast its load, and the cold lanes use fewer threads than cores.
            threads = sum(w.threads for w in cold_lanes)
            worth = not cold_lanes or (
                job.remaining_s * facts.seconds_per_audio_s > facts.load_s and threads < facts.cpu_cores)
        else:
            # Nobody idle can take it: would a new worker finish it sooner than any lane frees up?
            soonest = min((pending_free.get(w.id, 0.0) for w in lanes
                           if not (long_job and cold_possible and w.kind == "hot")), default=None)
            worth = soonest is None or facts.load_s < soonest
        if can_spawn and worth and spawned_for_model == 0:
            spawn.append((job.model, 0))  # threads filled in below
            cold_slots -= 1
            free_mb -= facts.worker_memory_mb.get(job.model, 0.0)
        settled.add((job.model, long_job))

    reap: list[str] = []
    queued_models = {j.model for j in facts.jobs}
    assigned = {wid for _, wid in assign}
    # A model with work queued and no lane at all, and no room to start one: an idle cold
    # lane of a model nobody is waiting for makes room now, not after its idle timeout.
    starving = {m for m in queued_models if not any(w.model == m for w in facts.workers)}
    if starving and len(cold) >= settings.max_cold_workers and not spawn:
        spare = [w for w in cold if w.state == "idle" and w.model not in queued_models and w.id not in assigned]
        if spare:
            reap.append(max(spare, key=lambda w: (w.idle_s, w.id)).id)
    if not reap and facts.since_last_reap_s >= settings.reap_stagger_s:
        expired = [w for w in cold if w.state == "idle" and w.idle_s >= settings.idle_timeout_s
                   and w.id not in {wid for _, wid in assign} and w.model not in queued_models]
        if expired:
            reap.append(max(expired, key=lambda w: (w.idle_s, w.id)).id)

    # A cold worker runs beside the hot one by design: give it half the cores, so
    # the two together do not oversubscribe the machine.
    spawn = [(model, cold_threads) for model, _ in spawn]
    return Decision(tuple(assign), tuple(spawn), tuple(reap))
