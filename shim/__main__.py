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
    from aiohttp import web

    from shim.app import build_app

    log.info("listening on http://%s:%d, daemon socket %s%s%s", config.host, config.port, config.socket,
             ", API key required" if config.resolved_api_key() else "",
             f", CORS for {config.cors_origins}" if config.cors_origins else "")
    # handler_cancellation: a client that hangs up cancels its handler, which drops the
    # request in the daemon too, instead of transcribing for nobody.
    app = build_app(config)
    freeze_heap()
    web.run_app(app, host=config.host, port=config.port, print=None,
                access_log=None, shutdown_timeout=10, handler_cancellation=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
