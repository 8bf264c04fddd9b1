"""Bounded load from the official `openai` SDK with its default retries, every attempt counted.

Each worker thread has its own client (default `max_retries`, 2) and sends one file after
another until told to stop or it has made `max_calls`. An httpx event hook counts the HTTP
attempts of each call, so `attempts - 1` is how many times the SDK retried it (after a 5xx
or a broken connection); a call that raised or came back with the wrong words is lost.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from testing.speech import word_recall

MIN_RECALL = 0.8  # the words must be the right ones; tiny.en may drop a comma's worth


@dataclass(frozen=True)
class Call:
    worker: int
    started: float  # monotonic
    seconds: float
    attempts: int
    text: str = ""
    error: str | None = None
    recall: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and self.recall >= MIN_RECALL


class Load:
    def __init__(self, base_url: str, audio: Path, expected: str, *, workers: int, max_calls: int,
                 timeout: float = 300.0) -> None:
        self.base_url = base_url
        self.audio = audio.read_bytes()
        self.name = audio.name
        self.expected = expected
        self.workers = workers
        self.max_calls = max_calls
        self.timeout = timeout
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._work, args=(i,), daemon=True) for i in range(workers)]

    def start(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def done(self) -> int:
        with self._lock:
            return len(self.calls)

    def stop(self, timeout: float = 600.0) -> list[Call]:
        """No new calls; wait for those under way; every call made."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                raise TimeoutError("an SDK call did not end within the load's timeout")
        return list(self.calls)

    def wait(self, timeout: float = 600.0) -> list[Call]:
        """Let every worker make its `max_calls`."""
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return self.stop(timeout=1.0)

    def _work(self, worker: int) -> None:
        try:
            self._calls(worker)
        except Exception as exc:  # a broken harness must fail the run, not hang it
            with self._lock:
                self.calls.append(Call(worker, time.monotonic(), 0.0, 0, error=f"harness: {exc!r}"))

    def _calls(self, worker: int) -> None:
        from openai import DefaultHttpxClient, OpenAI

        attempts = [0]

        def count(request: object) -> None:  # the SDK's own httpx request, once per attempt
            attempts[0] += 1

        http = DefaultHttpxClient(event_hooks={"request": [count]})
        with OpenAI(base_url=self.base_url + "/v1", api_key="unused", timeout=self.timeout,
                    http_client=http) as client:
            for _ in range(self.max_calls):
                if self._stop.is_set():
                    return
                attempts[0] = 0
                started = time.monotonic()
                try:
                    text = client.audio.transcriptions.create(model="whisper-1", file=(self.name, self.audio)).text
                    call = Call(worker, started, time.monotonic() - started, attempts[0], text,
                                recall=word_recall(self.expected, text))
                except Exception as exc:  # the SDK gave up: a lost request
                    call = Call(worker, started, time.monotonic() - started, attempts[0],
                                error=f"{type(exc).__name__}: {exc}")
                with self._lock:
                    self.calls.append(call)


def summary(calls: list[Call]) -> dict[str, int]:
    return {"calls": len(calls), "ok": sum(c.ok for c in calls), "lost": sum(not c.ok for c in calls),
            "retried": sum(c.attempts > 1 for c in calls), "retries": sum(max(0, c.attempts - 1) for c in calls)}
