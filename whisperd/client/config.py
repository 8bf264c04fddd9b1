"""whisperctl's settings (`[whisperctl]` in the config file) and its frozen config.

The socket and the models folder fall back to `[whisperd]`'s in the same file: a daemon
configured to listen (or keep its models) elsewhere than the default is found without
repeating the path.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
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
    Setting("models_dir", "", str,
            "where 'models pull' installs and 'models remove' removes (else [whisperd]'s models_dir; empty: "
            "/var/lib/whisperd/models where the package is installed, else ~/.cache/whisperd/models)",
            fallback="whisperd"),
)

# The packaged daemon's state directory (StateDirectory=whisperd); its models folder is inside.
PACKAGE_STATE_DIR = Path("/var/lib/whisperd")


def default_models_dir(env: Mapping[str, str]) -> Path:
    """Where the daemon looks when nothing says otherwise: the package's state directory, or the
    daemon's own default outside systemd (`<XDG cache>/whisperd/models`)."""
    if PACKAGE_STATE_DIR.is_dir():
        return PACKAGE_STATE_DIR / "models"
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "whisperd" / "models"


@dataclass(frozen=True)
class CtlConfig:
    socket: str
    timeout: float | None
    models_dir: str
    # Where each value came from ("default", "file:/etc/...", "env:WHISPERD_X", "cli").
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False, repr=False)
    config_file: str = ""

    @property
    def models_path(self) -> Path:
        return Path(self.models_dir) if self.models_dir else default_models_dir(os.environ)


def ctl_config(flags: Mapping[str, Any], config_file: str | None, env: Mapping[str, str]) -> CtlConfig:
    """whisperctl's flags (others in `flags` are ignored) merged with `env` and the file; ConfigError if bad."""
    names = {name for s in CTL_SETTINGS for name in (s.name, *s.aliases)}
    cli = {k: v for k, v in flags.items() if k in names}
    # An unreadable default file (0640 root:whisperd) is skipped: the socket's own
    # permission error then names the group to join.
    return build(CtlConfig, CTL_SETTINGS, "whisperctl", cli, env, config_file,
                 warn=stderr_warning("whisperctl"), skip_unreadable_default=True)
