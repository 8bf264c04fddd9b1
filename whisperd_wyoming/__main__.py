"""`whisperd-wyoming`: flags → WyomingConfig → serve the Wyoming protocol."""

from __future__ import annotations

import asyncio
import sys

from whisperd.core.errors import ConfigError
from whisperd_wyoming.config import WYOMING_SETTINGS, WyomingConfig, check


def main(argv: list[str] | None = None) -> int:
    from whisperd.core.startup import prepare

    config = prepare("whisperd-wyoming", "Wyoming speech-to-text server (Home Assistant) for whisperd.",
                     WyomingConfig, WYOMING_SETTINGS, "wyoming", argv)
    if isinstance(config, int):
        return config
    try:
        check(config)
    except ConfigError as err:
        print(f"whisperd-wyoming: {err.message}", file=sys.stderr)
        return 2
    from whisperd_wyoming.server import serve

    try:
        return asyncio.run(serve(config))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
