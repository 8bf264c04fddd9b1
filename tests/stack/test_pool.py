"""Hot and cold workers with the real model and real child processes."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from testing.speech import (
    FOX_FILES,
    FOX_TEXT,
    LONG_FILE,
    LONG_TEXT,
    SPANISH_FILE,
    long_speech_wav,
    word_recall,
)
from testing.stack import Daemon
from whisperd.client import AsyncClient, Client
from whisperd.core.errors import Overloaded, WorkerFailed, WorkerTimeout
from whisperd.core.replies import DaemonStatus, TranscribeResult


def status(d: Daemon) -> DaemonStatus:
    with Client(d.socket, timeout=30) as c:
        return c.status()


def wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(what)


@pytest.fixture(scope="module")
def daemon():
    # long_audio_seconds 20: the 32 s fixture counts as a long recording.
    d = Daemon("--engine", "faster-whisper", "--long-audio-seconds", "20", "--worker-idle-timeout", "600")
    yield d
    d.stop()


async def test_commands_stay_on_the_hot_worker_while_a_long_file_runs_in_windows(daemon):
    # ~130 s: its windows outlast a cold start whatever the machine's speed.
    long_audio, command = long_speech_wav(4), FOX_FILES["wav"].read_bytes()
    async with AsyncClient(daemon.socket, size=4) as c:
        long_task = asyncio.ensure_future(c.transcribe(long_audio))
        await asyncio.sleep(0.3)
        commands = []
        while not long_task.done() and len(commands) < 3:
            commands.append(await c.transcribe(command))
        long_reply = await long_task
    # Its windows ran on cold workers (the first perhaps on a hot slot while they came up).
    assert "cold-" in long_reply.worker
    assert word_recall(" ".join([LONG_TEXT] * 4), long_reply.text) >= 0.8
    assert commands, "the long file finished before any command was sent"
    for reply in commands:
        assert reply.worker == "hot"
        assert word_recall(FOX_TEXT, reply.text) >= 0.8
    s = status(daemon)
    assert s.spawns >= 1 and s.workers["cold"] >= 1
    assert any(lane.kind == "cold" and lane.pid for lane in s.lanes)


async def test_a_burst_of_mixed_requests_is_all_answered(daemon):
    files = [FOX_FILES[k].read_bytes() for k in ("wav", "mp3", "ogg", "webm", "m4a", "flac")]
    async with AsyncClient(daemon.socket, size=12) as c:
        replies = await asyncio.gather(*[c.transcribe(files[i % len(files)]) for i in range(12)],
                                       c.transcribe(LONG_FILE.read_bytes()))
    for r in replies[:12]:
        assert word_recall(FOX_TEXT, r.text) >= 0.8
    assert word_recall(LONG_TEXT, replies[12].text) >= 0.8


def test_kill_9_of_a_cold_worker_mid_request_is_retried(daemon):
    before = status(daemon)
    result: dict = {}

    def run():
        with Client(daemon.socket, timeout=300) as c:
            result["reply"] = c.transcribe(long_speech_wav(4))

    import threading

    t = threading.Thread(target=run)
    t.start()
    # Wait until a cold worker is busy with one of its windows, then kill -9 that process:
    # that window is retried elsewhere, the others are not touched.
    lane = wait_for(lambda: next((lane for lane in status(daemon).lanes
                                  if lane.kind == "cold" and lane.state == "busy"), None), 60, "a busy cold worker")
    os.kill(lane.pid, signal.SIGKILL)
    t.join(300)
    reply = result["reply"]
    assert word_recall(" ".join([LONG_TEXT] * 4), reply.text) >= 0.9  # no window lost
    after = status(daemon)
    assert after.crashes == before.crashes + 1
    assert after.counters["crashes"] == before.counters["crashes"] + 1
    assert after.counters["retries"] == before.counters["retries"] + 1
    assert lane.pid not in [other.pid for other in after.lanes]


def test_other_model_is_served_by_a_cold_worker(daemon):
    with Client(daemon.socket, timeout=300) as c:
        reply = c.transcribe(SPANISH_FILE.read_bytes(), model="base")
        models = {m.id: m for m in c.models()}
    assert reply.model == "base" and reply.worker.startswith("cold-")
    assert reply.transcript.language == "es"
    assert models["base"].loaded is True


def test_timed_out_worker_is_killed_and_the_request_answered():
    # The whole-file path: the one job goes to a cold worker, which overruns.
    d = Daemon("--engine", "faster-whisper", "--long-audio-seconds", "10", "--worker-timeout", "0.5",
               "--window-mode", "whole")
    try:
        with Client(d.socket, timeout=300) as c:
            with pytest.raises(WorkerTimeout, match="longer than") as raised:
                c.transcribe(LONG_FILE.read_bytes())
            assert raised.value.code == "worker_timeout" and isinstance(raised.value, WorkerFailed)
            # The daemon carries on: a command still works on the hot worker.
            assert word_recall(FOX_TEXT, c.transcribe(FOX_FILES["wav"].read_bytes()).text) >= 0.8
        wait_for(lambda: status(d).workers["cold"] == 0, 30, "the killed worker to be gone")
        counters = status(d).counters
        assert counters["timeouts"] == 1 and counters["retries"] == 0  # a timeout is never retried
        assert counters["crashes"] == 0  # killed on purpose: no crash
    finally:
        d.stop()


def test_idle_cold_workers_exit_and_nothing_leaks():
    d = Daemon("--engine", "faster-whisper", "--long-audio-seconds", "10", "--worker-idle-timeout", "1",
               "--window-mode", "whole")
    try:
        with Client(d.socket, timeout=300) as c:
            reply = c.transcribe(LONG_FILE.read_bytes())
        assert reply.worker.startswith("cold-")
        pid = next(lane.pid for lane in status(d).lanes if lane.kind == "cold")
        wait_for(lambda: status(d).workers["cold"] == 0, 30, "the idle worker to exit")
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower()
        counters = status(d).counters
        assert counters["idle_exits"] == 1 and counters["crashes"] == 0
    finally:
        assert d.stop() == 0


async def test_a_full_queue_answers_overloaded():
    d = Daemon("--engine", "faster-whisper", "--queue-size", "2", "--max-cold-workers", "0")
    try:
        audio = FOX_FILES["wav"].read_bytes()
        async with AsyncClient(d.socket, size=8) as c:
            results = await asyncio.gather(*[c.transcribe(audio) for _ in range(8)], return_exceptions=True)
        overloaded = [r for r in results if isinstance(r, Overloaded)]
        answered = [r for r in results if isinstance(r, TranscribeResult)]
        assert overloaded and answered and len(overloaded) + len(answered) == 8
    finally:
        d.stop()


# --- the hot worker's slots: several requests at once on one copy of the model ------------


@pytest.fixture(scope="module")
def two_slot_daemon():
    # No cold workers: whatever runs concurrently runs inside the hot worker. Whole files:
    # windows would keep one slot free for commands.
    d = Daemon("--engine", "faster-whisper", "--max-cold-workers", "0", "--hot-slots", "2",
               "--long-audio-seconds", "600", "--window-mode", "whole")
    yield d
    d.stop()


async def test_the_hot_worker_decodes_two_requests_at_once(two_slot_daemon):
    d = two_slot_daemon
    s = status(d)
    assert s.hot_slots == 2 and [lane.id for lane in s.lanes] == ["hot", "hot-2"]
    audio = LONG_FILE.read_bytes()
    async with AsyncClient(d.socket, size=2) as c:
        tasks = [asyncio.ensure_future(c.transcribe(audio)) for _ in range(2)]
        both_busy = await asyncio.to_thread(
            wait_for, lambda: all(lane.state == "busy" for lane in status(d).lanes), 60, "both slots busy")
        replies = await asyncio.gather(*tasks)
    assert both_busy and status(d).workers["cold"] == 0
    for r in replies:
        assert r.worker == "hot"
        assert word_recall(LONG_TEXT, r.text) >= 0.8
    assert replies[0].text == replies[1].text  # slots share one model


async def test_a_command_is_answered_while_a_long_file_holds_the_other_slot(two_slot_daemon):
    long_audio, command = LONG_FILE.read_bytes(), FOX_FILES["wav"].read_bytes()
    async with AsyncClient(two_slot_daemon.socket, size=2) as c:
        long_task = asyncio.ensure_future(c.transcribe(long_audio))
        await asyncio.to_thread(wait_for, lambda: status(two_slot_daemon).running == 1, 30, "the long file")
        reply = await c.transcribe(command)
        assert not long_task.done(), "the command waited for the long file"
        long_reply = await long_task
    assert word_recall(FOX_TEXT, reply.text) >= 0.8
    assert word_recall(LONG_TEXT, long_reply.text) >= 0.8


def test_openai_whisper_keeps_one_slot():
    d = Daemon("--engine", "openai-whisper", "--max-cold-workers", "0", "--hot-slots", "4")
    try:
        assert status(d).hot_slots == 1
        assert "1 hot slot × " in d.log()
    finally:
        d.stop()
