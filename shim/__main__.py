"""`whisperd-shim`: flags → ShimConfig → serve the OpenAI-compatible HTTP API."""

from __future__ import annotations

import logging
import sys

from shim.config import SHIM_SETTINGS, ShimConfig

log = logging.getLogger("shim")


def main(argv: list[str] | None = None) -> int:
    from whisperd.core.startup import freeze_heap, prepare

    config = prepare("whisperd-shim", "OpenAI-compatible HTTP API for whisperd.", ShimConfig, SHIM_SETTINGS,
                     "shim", argv)
    if isinstance(config, int):
        return config
    from shim.app import build_app
    from shim.serve import connection_cap, run

    limit = connection_cap(config.max_connections, config.connections)
    log.info("listening on http://%s:%d, daemon socket %s, up to %d connections%s%s", config.host, config.port,
             config.socket, limit, ", API key required" if config.resolved_api_key() else "",
             f", CORS for {config.cors_origins}" if config.cors_origins else "")
    app = build_app(config)
    freeze_heap()
    # handler_cancellation: a client that hangs up cancels its handler, which drops the
    # request in the daemon too, instead of transcribing for nobody.
    # drain_grace, then drain_timeout for what is in flight (shim/drain.py; the unit's TimeoutStopSec
    # covers both).
    run(app, config.host, config.port, limit, drain_grace=config.drain_grace, access_log=None,
        shutdown_timeout=config.drain_timeout, keepalive_timeout=config.keepalive_timeout,
        handler_cancellation=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
