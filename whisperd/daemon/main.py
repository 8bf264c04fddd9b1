"""`whisperd`: flags → DaemonConfig → load the model → serve until told to stop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Callable

from whisperd.core.errors import WhisperdError
from whisperd.core.settings import from_command_line
from whisperd.daemon.config import DAEMON_SETTINGS, DaemonConfig

if TYPE_CHECKING:
    from whisperd.engines.base import Engine, ModelInfo

log = logging.getLogger("whisperd")


DESCRIPTION = "Local Whisper speech-to-text daemon."


def load_config(argv: list[str] | None = None) -> tuple[DaemonConfig, bool]:
    return from_command_line("whisperd", DESCRIPTION, DaemonConfig, DAEMON_SETTINGS, "whisperd", argv, os.environ)


async def serve(config: DaemonConfig) -> int:
    from whisperd.core.startup import freeze_heap
    from whisperd.daemon import systemd
    from whisperd.daemon.lanes.cold import warm_fork_server
    from whisperd.daemon.lanes.hot import hot_lanes
    from whisperd.daemon.models import resolve_model
    from whisperd.daemon.pool import Pool
    from whisperd.daemon.server import Server, bind_unix_socket

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals_seen = 0

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1:
            log.warning("second %s: stopping now", signal.Signals(signum).name)
            os._exit(1)
        log.info("%s: finishing in-flight work (up to %.0f s), then stopping",
                 signal.Signals(signum).name, config.shutdown_grace)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    loop.add_signal_handler(signal.SIGHUP, lambda: _reload(config))

    # Activated sockets first: systemd may already be queueing clients on them.
    activated = systemd.listen_fds()
    t0 = time.monotonic()
    model = resolve_model(config.model, config.cache_path, config.models_path)
    systemd.status(f"loading model {model.name} ({config.engine})…")
    log.info("loading model %s from %s (engine %s, device %s)", model.name, model.path, config.engine, config.device)
    engine, threads = await asyncio.to_thread(load_hot_engine, config, model)
    served = served_models(config, model)
    lanes = hot_lanes(engine, model.name)
    pool = Pool(config, lanes, served)
    if config.max_cold_workers > 0:
        # The fork server imports torch/ctranslate2 once, in the background; workers fork from it.
        asyncio.get_running_loop().run_in_executor(None, warm_fork_server, engine.name == "openai-whisper")
    server = Server(config, model, pool)
    pool.start()
    sock = activated[0] if activated else bind_unix_socket(config.socket, config.socket_mode, config.socket_group)
    await server.start(sock)

    def status_line() -> str:
        s = server.status()
        return (f"ready: model {s['model']}, engine {s['engine']} ({s['compute_type']}), device {s['device']}, "
                f"queue {s['queue']}, running {s['running']}, workers {1 + s['workers']['cold']} "
                f"(cold {s['workers']['cold']}, loading {s['loading']}), spawns {s['spawns']}, "
                f"crashes {s['crashes']}, served {s['served']}")

    server.on_change = pool.on_change = throttled_status(status_line)
    where = "an activated socket" if activated else config.socket
    log.info("ready in %.2f s: model %s, engine %s (%s), device %s, %d hot slot%s × %d thread%s, listening on %s",
             time.monotonic() - t0, model.name, engine.name, engine.compute_type, engine.device,
             len(lanes), "s"[:len(lanes) > 1], threads, "s"[:threads > 1], where)
    freeze_heap()
    systemd.ready(status_line())
    watchdog = systemd.Watchdog()
    watchdog.start()
    try:
        await stop.wait()
    finally:
        systemd.stopping()
        systemd.status("stopping: finishing in-flight requests…")
        await server.drain(config.shutdown_grace)
        await watchdog.stop()
        if not activated:
            try:
                os.unlink(config.socket)
            except OSError:
                pass
    log.info("stopped")
    return 0


def load_hot_engine(config: DaemonConfig, model: "ModelInfo") -> tuple["Engine", int]:
    """The resident model sized for its slots (`engine.concurrency`), and the CPU threads per slot."""
    from whisperd.daemon.policy import hot_layout
    from whisperd.engines import load_engine, resolve_engine_name

    name = resolve_engine_name(config.engine, model)
    device = config.device
    if device == "auto" and name == "faster-whisper":
        from whisperd.engines.faster_whisper import pick_device

        device = pick_device(device)
    slots, threads = hot_layout(cores=os.cpu_count() or 1, slots=config.hot_slots, threads=config.cpu_threads,
                                engine=name, device=device)
    engine = load_engine(config.engine, model, device=device, compute_type=config.compute_type,
                         cpu_threads=threads, workers=slots, cache_dir=str(config.cache_path))
    return engine, threads


def throttled_status(make_line: Callable[[], str], interval: float = 0.25) -> Callable[[], None]:
    """Refresh systemd's STATUS= at most every `interval`; nothing at all outside systemd.

    Several events per request ask for a refresh; building and sending the line
    each time cost 5-7 % of the daemon's time at its ceiling (profiled).
    """
    from whisperd.daemon import systemd

    if not os.environ.get("NOTIFY_SOCKET"):
        return lambda: None
    loop = asyncio.get_running_loop()
    pending = False

    def send() -> None:
        nonlocal pending
        pending = False
        systemd.status(make_line())

    def request() -> None:
        nonlocal pending
        if not pending:
            pending = True
            loop.call_later(interval, send)

    return request


def served_models(config: DaemonConfig, default: "ModelInfo") -> dict[str, "ModelInfo"]:
    """The default model plus the installed models `extra_models` names."""
    from whisperd.daemon.models import installed_models

    served = {default.name: default}
    wanted = [m.strip() for m in config.extra_models.split(",") if m.strip()]
    if not wanted or config.max_cold_workers == 0:
        return served
    installed = installed_models(config.cache_path, config.models_path)
    for name in installed if "*" in wanted else wanted:
        if name in installed:
            served.setdefault(name, installed[name])
        else:
            log.warning("extra model %r is not installed; ignoring it", name)
    return served


def _reload(config: DaemonConfig) -> None:
    """SIGHUP: re-read the log level (the rest needs a restart)."""
    from whisperd.core.logs import set_level

    try:
        fresh, _ = load_config(sys.argv[1:])
    except WhisperdError as err:
        log.error("reload failed, keeping the old settings: %s", err.message)
        return
    set_level(fresh.log_level)
    log.info("reloaded: log level %s", fresh.log_level)


def main(argv: list[str] | None = None) -> int:
    from whisperd.core.startup import prepare

    config = prepare("whisperd", DESCRIPTION, DaemonConfig, DAEMON_SETTINGS, "whisperd", argv)
    if isinstance(config, int):
        return config
    try:
        return asyncio.run(serve(config))
    except WhisperdError as err:
        log.error("cannot start: %s", err.message)
        return 1
    except OSError as err:
        log.error("cannot start: %s", err)
        return 1


if __name__ == "__main__":
    sys.exit(main())
