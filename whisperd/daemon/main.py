"""`whisperd`: flags → DaemonConfig → `Daemon`: startup(), serve(), shutdown().

The shape is uvicorn's `Server.serve`. Signal handlers only set flags and wake
whoever waits for them:

- the first SIGTERM/SIGINT sets `should_exit`: serving ends and the drain gives
  in-flight work up to `shutdown_grace` seconds; the exit status is 0;
- a second one sets `force_exit`: the drain is cut short - connections are
  cancelled and the workers stopped now - and the socket is still unlinked;
  the exit status is 1 (during a model load, start-up simply stops waiting);
- SIGHUP re-reads the log level and the models folder (`Server.rescan`).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

from whisperd.core.errors import WhisperdError
from whisperd.core.settings import from_command_line
from whisperd.daemon.config import DAEMON_SETTINGS, DaemonConfig

if TYPE_CHECKING:
    from whisperd.daemon import systemd
    from whisperd.daemon.server import Server
    from whisperd.engines.base import Engine, ModelInfo

log = logging.getLogger("whisperd")

T = TypeVar("T")

DESCRIPTION = "Local Whisper speech-to-text daemon."
EXIT_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def load_config(argv: Sequence[str] | None = None) -> tuple[DaemonConfig, bool]:
    return from_command_line("whisperd", DESCRIPTION, DaemonConfig, DAEMON_SETTINGS, "whisperd", argv, os.environ)


class Phase(enum.Enum):
    STARTING = "starting"
    SERVING = "serving"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Daemon:
    """One run of the daemon: `await Daemon(config).run()` returns the exit status."""

    def __init__(self, config: DaemonConfig, argv: Sequence[str] | None = None) -> None:
        self.config = config
        self.argv = list(sys.argv[1:] if argv is None else argv)  # read again on SIGHUP
        self.should_exit = False
        self.force_exit = False
        self.reload_requested = False
        self.exit_signals: list[str] = []  # names, in order of arrival
        self.phases: list[Phase] = []  # every phase entered, in order
        self.server: Server | None = None
        self.watchdog: systemd.Watchdog | None = None
        self.bound_path: str | None = None  # the socket file we created (never an activated one)
        self._wake = asyncio.Event()  # a signal came: serve() looks at the flags
        self._forced = asyncio.Event()  # a second exit signal came: stop waiting for anything
        self._reached = {phase: asyncio.Event() for phase in Phase}

    async def wait_until(self, phase: Phase) -> None:
        """Return once the daemon has entered `phase` (at once if it already has)."""
        await self._reached[phase].wait()

    async def run(self) -> int:
        """startup(), serve() unless told to stop meanwhile, shutdown(); the exit status."""
        self._capture_signals()
        try:
            try:
                await self.startup()
                if not self.should_exit:
                    await self.serve()
            finally:
                await self.shutdown()
        finally:
            self._release_signals()
        if self.force_exit:
            log.warning("stopped; in-flight work was cut short")
            return 1
        log.info("stopped")
        return 0

    # --- signals: flags only ----------------------------------------------------------

    def handle_signal(self, signum: int) -> None:
        """Set the flags and wake the waiters; whatever phase runs acts on them."""
        if signum == signal.SIGHUP:
            self.reload_requested = True
        else:
            self.exit_signals.append(signal.Signals(signum).name)
            if self.should_exit:
                self.force_exit = True
                self._forced.set()
            self.should_exit = True
        self._wake.set()

    def _capture_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (*EXIT_SIGNALS, signal.SIGHUP):
            loop.add_signal_handler(signum, self.handle_signal, signum)

    def _release_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (*EXIT_SIGNALS, signal.SIGHUP):
            loop.remove_signal_handler(signum)

    # --- the three phases -------------------------------------------------------------

    async def startup(self) -> None:
        """Activated sockets, the model, lanes and pool, the listener, READY=1, the watchdog."""
        from whisperd.core.startup import freeze_heap
        from whisperd.daemon import systemd
        from whisperd.daemon.lanes.cold import warm_fork_server
        from whisperd.daemon.lanes.hot import hot_lanes
        from whisperd.daemon.models import resolve_model, served_models
        from whisperd.daemon.pool import Pool
        from whisperd.daemon.server import Server, bind_unix_socket
        from whisperd.daemon.status_line import status_line, throttled_status

        self._enter(Phase.STARTING)
        config = self.config
        # Activated sockets first: systemd may already be queueing clients on them.
        activated = systemd.listen_fds()
        t0 = time.monotonic()
        model = resolve_model(config.model, config.cache_path, config.models_path, config.hf_cache_path)
        systemd.status(f"loading model {model.name} ({config.engine})…")
        log.info("loading model %s from %s (engine %s, device %s)", model.name, model.path, config.engine, config.device)
        loading = asyncio.ensure_future(on_daemon_thread(load_hot_engine, config, model))
        if not await self._unless_forced(loading) or self.should_exit:
            return  # told to stop while the model loaded: nothing to serve
        engine, threads = loading.result()
        lanes = hot_lanes(engine, model.name, threads)
        pool = Pool(config, lanes, served_models(config, model))
        if config.max_cold_workers > 0:
            # The fork server imports torch/ctranslate2 once, in the background; workers fork from it.
            asyncio.get_running_loop().run_in_executor(None, warm_fork_server, engine.name == "openai-whisper")
        if config.window_mode == "windows":
            # The pause detector (Silero's ONNX model) loads now, not on the first long file.
            from whisperd.daemon.windows import default_detector

            asyncio.get_running_loop().run_in_executor(None, default_detector, config.window_vad)
        self.server = server = Server(config, model, pool)
        pool.start()
        if activated:
            sock = activated[0]
        else:
            sock = bind_unix_socket(config.socket, config.socket_mode, config.socket_group)
            self.bound_path = config.socket
        await server.start(sock)
        server.on_change = pool.on_change = throttled_status(lambda: status_line(server.daemon_status()))
        where = "an activated socket" if activated else config.socket
        log.info("ready in %.2f s: model %s, engine %s (%s), device %s, %d hot slot%s × %d thread%s, listening on %s",
                 time.monotonic() - t0, model.name, engine.name, engine.compute_type, engine.device,
                 len(lanes), "s"[:len(lanes) > 1], threads, "s"[:threads > 1], where)
        freeze_heap()
        systemd.ready(status_line(server.daemon_status()))
        self.watchdog = systemd.Watchdog()
        self.watchdog.start()

    async def serve(self) -> None:
        """Until an exit signal; SIGHUP re-reads the log level and rescans the models meanwhile."""
        self._enter(Phase.SERVING)
        while True:
            if self.reload_requested:
                self.reload_requested = False
                self._reload()
                if self.server is not None:
                    await self._rescan(self.server)  # a model dropped into the models folder by hand
            if self.should_exit:
                return
            await self._wake.wait()
            self._wake.clear()

    async def shutdown(self) -> None:
        """STOPPING=1, the drain (cut short by a second signal), the watchdog off, the socket file gone.

        Runs after a failed start-up too: it stops whatever had started.
        """
        from whisperd.daemon import systemd

        self._enter(Phase.STOPPING)
        if self.exit_signals:
            log.info("%s: finishing in-flight work (up to %.0f s), then stopping",
                     self.exit_signals[0], self.config.shutdown_grace)
        systemd.stopping("stopping: finishing in-flight requests…")
        try:
            if self.server is not None:
                await self._drain(self.server)
            elif self.force_exit:
                log.warning("second %s: stopping now", self.exit_signals[-1])
        finally:
            if self.watchdog is not None:
                await self.watchdog.stop()
            if self.bound_path is not None:
                try:
                    os.unlink(self.bound_path)
                except OSError:
                    pass
            self._enter(Phase.STOPPED)

    async def _drain(self, server: Server) -> None:
        draining = asyncio.ensure_future(server.drain(self.config.shutdown_grace))
        if await self._unless_forced(draining):
            draining.result()  # a drain that failed says so
            return
        log.warning("second %s: stopping now", self.exit_signals[-1])
        # A grace of 0: the connections are cancelled and the workers stopped at once.
        await server.drain(0)

    # --- helpers ----------------------------------------------------------------------

    async def _unless_forced(self, task: asyncio.Future[Any]) -> bool:
        """Wait for `task`; False, with `task` cancelled, when a second signal comes first."""
        forced = asyncio.ensure_future(self._forced.wait())
        try:
            await asyncio.wait({task, forced}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            forced.cancel()
        if task.done():
            return True
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False

    def _enter(self, phase: Phase) -> None:
        self.phases.append(phase)
        self._reached[phase].set()

    @staticmethod
    async def _rescan(server: Server) -> None:
        try:
            await server.rescan()
        except WhisperdError as err:
            log.error("rescan failed, serving the models as before: %s", err.message)

    def _reload(self) -> None:
        """SIGHUP: re-read the log level (the rest needs a restart)."""
        from whisperd.core.logs import set_level

        try:
            fresh, _ = load_config(self.argv)
        except WhisperdError as err:
            log.error("reload failed, keeping the old settings: %s", err.message)
            return
        set_level(fresh.log_level)
        log.info("reloaded: log level %s", fresh.log_level)


async def on_daemon_thread(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` on a daemon thread, awaited.

    `asyncio.to_thread`'s threads are joined at exit, so a forced stop during a
    model load (or a checkpoint's conversion) would wait for it to finish; a
    daemon thread ends with the process.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if future.done():  # cancelled: nobody waits for it any more
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def work() -> None:
        try:
            outcome = (True, fn(*args))
        except BaseException as exc:  # noqa: B902 - the awaiting side decides what it means
            outcome = (False, exc)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:
            pass  # the loop has closed meanwhile

    threading.Thread(target=work, name=getattr(fn, "__name__", "work"), daemon=True).start()
    return await future


def load_hot_engine(config: DaemonConfig, model: "ModelInfo") -> tuple["Engine", int]:
    """The resident model sized for its slots (`engine.concurrency`), and the CPU threads per slot."""
    from whisperd.daemon.policy import hot_layout
    from whisperd.engines import load_engine, resolve_device, resolve_engine_name

    name = resolve_engine_name(config.engine, model)
    device = resolve_device(name, config.device)
    slots, threads = hot_layout(cores=os.cpu_count() or 1, slots=config.hot_slots, threads=config.cpu_threads,
                                engine=name, device=device)
    engine = load_engine(config.engine, model, device=device, compute_type=config.compute_type,
                         cpu_threads=threads, workers=slots, cache_dir=str(config.cache_path))
    return engine, threads


def main(argv: list[str] | None = None) -> int:
    from whisperd.core.startup import prepare

    config = prepare("whisperd", DESCRIPTION, DaemonConfig, DAEMON_SETTINGS, "whisperd", argv)
    if isinstance(config, int):
        return config
    try:
        return asyncio.run(Daemon(config, argv).run())
    except WhisperdError as err:
        log.error("cannot start: %s", err.message)
        return 1
    except OSError as err:
        log.error("cannot start: %s", err)
        return 1


if __name__ == "__main__":
    sys.exit(main())
