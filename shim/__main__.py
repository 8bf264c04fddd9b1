"""`whisperd-shim`: flags → ShimConfig → serve the OpenAI-compatible HTTP API."""

from __future__ import annotations

import logging
import os
import sys

from whisperd.config import SHIM_SETTINGS, ShimConfig, describe, from_command_line
from whisperd.errors import ConfigError

log = logging.getLogger("shim")


def main(argv: list[str] | None = None) -> int:
    try:
        config, print_config = from_command_line(
            "whisperd-shim", "OpenAI-compatible HTTP API for whisperd.", ShimConfig, SHIM_SETTINGS, "shim",
            argv, os.environ,
        )
        config.resolved_api_key()
    except ConfigError as err:
        print(f"whisperd-shim: {err.message}", file=sys.stderr)
        return 2
    if print_config:
        print(describe(config, SHIM_SETTINGS))
        return 0

    from aiohttp import web

    from shim.app import build_app
    from whisperd.logging_setup import setup_logging

    setup_logging(config.log_level)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    log.info("listening on http://%s:%d, daemon socket %s%s%s", config.host, config.port, config.socket,
             ", API key required" if config.resolved_api_key() else "",
             f", CORS for {config.cors_origins}" if config.cors_origins else "")
    # handler_cancellation: a client that hangs up cancels its handler, which drops the
    # request in the daemon too, instead of transcribing for nobody.
    web.run_app(build_app(config), host=config.host, port=config.port, print=None,
                access_log=None, shutdown_timeout=10, handler_cancellation=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
