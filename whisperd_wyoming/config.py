"""whisperd-wyoming's settings (`[wyoming]` in the config file) and its frozen config.

Stdlib only: `packaging/conf-keys.py` reads this table with the system's Python,
which has no `wyoming` package.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlparse

from whisperd.core.errors import ConfigError
from whisperd.core.settings import DEFAULT_SOCKET, LOG_LEVELS, Setting, bounded, choice

DEFAULT_PORT = 10300  # the port Home Assistant's Wyoming servers conventionally use
DEFAULT_URI = f"tcp://127.0.0.1:{DEFAULT_PORT}"
PROGRAM_NAME = "whisperd"  # the ASR program's name in `info`, and the zeroconf name by default
OFF = ("", "off", "no", "false", "0")
MAX_ZEROCONF_NAME = 63  # one DNS label


@dataclass(frozen=True)
class Listen:
    """Where the server listens: `tcp://HOST:PORT` or `unix:///PATH`."""

    scheme: str
    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def loopback_only(self) -> bool:
        if self.scheme == "unix":
            return True
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False  # a host name: whatever it resolves to


def parse_uri(text: str) -> str:
    """A `tcp://HOST:PORT` or `unix:///PATH` URI, checked (stdio is no server for a service)."""
    listen_on(text)
    return text.strip()


def listen_on(uri: str) -> Listen:
    parsed = urlparse(uri.strip())
    if parsed.scheme == "unix":
        if not parsed.path:
            raise ValueError("a unix:// URI needs a path (unix:///run/whisperd-wyoming.sock)")
        return Listen("unix", path=parsed.path)
    if parsed.scheme == "tcp":
        try:
            port = parsed.port
        except ValueError:
            raise ValueError(f"bad port in {uri!r}") from None
        if not parsed.hostname or port is None:
            raise ValueError(f"a tcp:// URI needs a host and a port (tcp://127.0.0.1:{DEFAULT_PORT}), got {uri!r}")
        return Listen("tcp", host=parsed.hostname, port=port)
    raise ValueError(f"expected tcp://HOST:PORT or unix:///PATH, got {uri!r}")


def parse_zeroconf(text: str) -> str:
    """The name to advertise over zeroconf; empty (or off): no zeroconf."""
    name = text.strip()
    if name.lower() in OFF:
        return ""
    if len(name.encode()) > MAX_ZEROCONF_NAME or "." in name or not name.isprintable():
        raise ValueError(f"a zeroconf name is one DNS label: up to {MAX_ZEROCONF_NAME} bytes, no dots, "
                         f"got {name!r:.80}")
    return name


def _env(name: str) -> str:
    return "WHISPERD_WYOMING_" + name.upper()


WYOMING_SETTINGS: tuple[Setting, ...] = (
    Setting("socket", DEFAULT_SOCKET, str, "the daemon's Unix socket", env=_env("socket")),
    Setting("uri", DEFAULT_URI, parse_uri, "where to listen: tcp://HOST:PORT or unix:///PATH", env=_env("uri")),
    Setting("zeroconf", "", parse_zeroconf,
            f"advertise the server over zeroconf (mDNS) under this name for Home Assistant's discovery; "
            f"the flag alone: '{PROGRAM_NAME}'; empty: off (it needs a uri on a LAN address)",
            env=_env("zeroconf"), bare=PROGRAM_NAME),
    Setting("idle_timeout", 15.0, bounded(float, 0.5, 3600.0),
            "seconds a client may send nothing (mid-utterance or between) before it gets an error and is "
            "disconnected", env=_env("idle_timeout")),
    Setting("max_utterance_seconds", 300.0, bounded(float, 1.0, 7200.0),
            "the longest utterance accepted, in seconds of audio; past it an error", env=_env("max_utterance_seconds")),
    Setting("transcript_timeout", 60.0, bounded(float, 1.0, 3600.0),
            "seconds to wait for the daemon's transcript after audio-stop", env=_env("transcript_timeout")),
    Setting("log_level", "info", choice(*LOG_LEVELS), "log level (debug logs transcripts)", env=_env("log_level")),
)


@dataclass(frozen=True)
class WyomingConfig:
    socket: str
    uri: str
    zeroconf: str
    idle_timeout: float
    max_utterance_seconds: float
    transcript_timeout: float
    log_level: str
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False, repr=False)
    config_file: str = ""

    @property
    def listen(self) -> Listen:
        return listen_on(self.uri)


def check(config: WyomingConfig) -> None:
    """What no single setting can say wrong on its own; ConfigError."""
    if config.zeroconf and config.listen.loopback_only:
        raise ConfigError(f"zeroconf would advertise {config.uri} on the LAN, where nobody can reach it: listen "
                          f"on a LAN address too (uri = tcp://0.0.0.0:{DEFAULT_PORT}), or leave zeroconf off")
