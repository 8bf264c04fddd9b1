"""whisperctl's settings (`[whisperctl]` in the config file) and its frozen config.

The socket falls back to `[whisperd]`'s in the same file: a daemon configured to
listen elsewhere than the default path is found without repeating the path.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

from whisperd.core.settings import DEFAULT_SOCKET, Setting, build, stderr_warning


def parse_timeout(text: str) -> float | None:
    """Seconds, or empty for no limit (wait as long as the transcription takes)."""
    if not text.strip():
        return None
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError("must be a positive number of seconds")
    return value


CTL_SETTINGS: tuple[Setting, ...] = (
    Setting("socket", DEFAULT_SOCKET, str, "the daemon's socket (else [whisperd]'s socket in the config file)",
            fallback="whisperd"),
    Setting("timeout", None, parse_timeout, "give up when the daemon is silent this many seconds (empty: wait)"),
)


@dataclass(frozen=True)
class CtlConfig:
    socket: str
    timeout: float | None
    # Where each value came from ("default", "file:/etc/...", "env:WHISPERD_X", "cli").
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False, repr=False)
    config_file: str = ""


def ctl_config(flags: Mapping[str, Any], config_file: str | None, env: Mapping[str, str]) -> CtlConfig:
    """whisperctl's flags (others in `flags` are ignored) merged with `env` and the file; ConfigError if bad."""
    names = {name for s in CTL_SETTINGS for name in (s.name, *s.aliases)}
    cli = {k: v for k, v in flags.items() if k in names}
    # An unreadable default file (0640 root:whisperd) is skipped: the socket's own
    # permission error then names the group to join.
    return build(CtlConfig, CTL_SETTINGS, "whisperctl", cli, env, config_file,
                 warn=stderr_warning("whisperctl"), skip_unreadable_default=True)
