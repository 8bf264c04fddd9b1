"""What both programs do before serving: flags → config (or a clean exit), logging, uvloop."""

from __future__ import annotations

import os
import sys
from typing import Any, Sequence

from whisperd.core.errors import ConfigError
from whisperd.core.settings import Setting, describe, from_command_line


def prepare(prog: str, description: str, cls: type, settings: Sequence[Setting], section: str,
            argv: Sequence[str] | None) -> Any:
    """The frozen config ready to serve, or an exit code (2: bad config; 0: --print-config shown)."""
    quiet_libraries()
    try:
        config, print_config = from_command_line(prog, description, cls, settings, section, argv, os.environ)
        if hasattr(config, "resolved_api_key"):
            config.resolved_api_key()  # an unreadable key file is a config error, caught now
    except ConfigError as err:
        print(f"{prog}: {err.message}", file=sys.stderr)
        return 2
    if print_config:
        print(describe(config, settings))
        return 0
    from whisperd.core.logs import setup_logging

    setup_logging(config.log_level)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return config


# onnxruntime (Silero VAD) ships Microsoft's 1DS telemetry on Linux: with it on, it writes
# a session file to TMPDIR and would upload events. Off in every program and its children.
NO_TELEMETRY = {"ORT_DISABLE_TELEMETRY": "1"}
# faster-whisper imports huggingface_hub, and fetches from the hub when a model is a name
# rather than a directory, or a directory lacks tokenizer.json. The daemon always hands it a
# directory; offline mode makes sure a gap there is an error, never a download.
# (`whisperctl models pull`, the one program that downloads, does not come through here.)
OFFLINE = {"HF_HUB_OFFLINE": "1"}


def quiet_libraries() -> None:
    """Turn off what libraries would report or fetch on their own; before they are imported."""
    os.environ.update(NO_TELEMETRY)
    os.environ.update(OFFLINE)


def freeze_heap() -> None:
    """Move everything loaded so far out of the garbage collector's sight.

    The modules, the model's Python objects and the app are never freed; left in
    the tracked heap, every full collection would walk them all again, pausing
    whatever requests are in flight.
    """
    import gc

    gc.collect()
    gc.freeze()
