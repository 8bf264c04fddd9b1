"""The daemon's Server and Pool built in this process on the null engine, for the middle-level tests.

No model weights, no child process: hot lanes over `load_engine("null", ...)` (or an
engine a test passes), no cold workers, a real Unix socket under /tmp (AF_UNIX paths
are capped at 108 bytes, pytest's tmp_path can be longer).
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import tempfile
import threading
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from tests.stack.reliability.media import tone, wav
from whisperd.core.constants import SAMPLE_RATE
from whisperd.core.errors import JobCancelled
from whisperd.core.settings import build
from whisperd.core.transcript import Segment, Transcript
from whisperd.daemon.config import DAEMON_SETTINGS, DaemonConfig
from whisperd.daemon.lanes.hot import hot_lanes
from whisperd.daemon.pool import Pool
from whisperd.daemon.server import Server, bind_unix_socket
from whisperd.engines import load_engine
from whisperd.engines.base import ModelInfo, Options, SegmentCallback


def wav_bytes(seconds: float = 1.0) -> bytes:
    """A plain 16 kHz mono PCM WAV of a quiet tone (the pool decodes it inline)."""
    return wav(tone(seconds))


class GatedEngine:
    """An engine that decodes until `release` is set, calling back per 'segment' as real ones do.

    So a job dropped by the daemon is stopped at its next callback (JobCancelled), and a
    test can hold a request in flight for as long as it needs - with events, not sleeps.
    """

    name = "null"
    device = "cpu"
    compute_type = "none"
    concurrency = 1

    def __init__(self, text: str = "gated") -> None:
        self.text = text
        self.started = threading.Event()
        self.release = threading.Event()
        self.stopped = threading.Event()
        self.cancelled = 0
        self.finished = 0

    def counters(self) -> dict[str, int]:
        return {}

    def transcribe(self, audio: Any, options: Options, on_segment: SegmentCallback | None = None) -> Transcript:
        duration = len(audio) / SAMPLE_RATE
        segment = Segment(0, 0, 0.0, duration, " " + self.text)
        self.stopped.clear()
        self.started.set()
        try:
            while not self.release.wait(0.01):
                if on_segment is not None:
                    on_segment(segment)  # raises JobCancelled once the daemon dropped the job
            self.finished += 1
            return Transcript(self.text, options.language or "en", duration, (segment,), options.task)
        except JobCancelled:
            self.cancelled += 1
            raise
        finally:
            self.started.clear()
            self.stopped.set()


async def wait_event(event: threading.Event, timeout: float = 10.0) -> None:
    """Await an engine thread's event without blocking the daemon's loop."""
    if not await asyncio.to_thread(event.wait, timeout):
        raise TimeoutError("the engine never got there")


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for a state of the daemon (yielding to its loop), not for a guessed time."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


@dataclasses.dataclass
class InProcessDaemon:
    server: Server
    pool: Pool
    socket: str
    engine: Any

    @property
    def counters(self) -> dict[str, int]:
        return self.server.daemon_status().counters


def daemon_config(socket: str, **settings: Any) -> DaemonConfig:
    config = build(DaemonConfig, DAEMON_SETTINGS, "whisperd", {}, {}, "/dev/null")
    return dataclasses.replace(config, socket=socket, max_cold_workers=0, **settings)


@asynccontextmanager
async def in_process_daemon(engine: Any = None, *, grace: float = 5.0,
                            **settings: Any) -> AsyncIterator[InProcessDaemon]:
    """Server + Pool on `engine` (default: the null engine), serving tiny.en, and base listed too."""
    folder = Path(tempfile.mkdtemp(prefix="wd-", dir="/tmp"))
    try:
        models = {}
        for name, multilingual in (("tiny.en", False), ("base", True)):
            (folder / name).mkdir()
            (folder / name / "model.bin").write_bytes(b"")  # the pool sizes workers from the weights' size
            models[name] = ModelInfo(name, "ctranslate2", folder / name, multilingual)
        default = models["tiny.en"]
        config = daemon_config(str(folder / "w.sock"), **settings)
        engine = engine if engine is not None else load_engine("null", default)
        pool = Pool(config, hot_lanes(engine, default.name), models)
        server = Server(config, default, pool)
        pool.start()
        await server.start(bind_unix_socket(config.socket, 0o600, ""))
        try:
            yield InProcessDaemon(server, pool, config.socket, engine)
        finally:
            if isinstance(engine, GatedEngine):
                engine.release.set()
            if not server.draining:
                await server.drain(grace)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

