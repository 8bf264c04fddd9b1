"""The HTTP shim's settings (`[shim]` in the config file) and its frozen config."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from whisperd.core.errors import ConfigError
from whisperd.core.settings import (
    DEFAULT_SOCKET,
    LOG_LEVELS,
    Setting,
    bounded,
    choice,
    parse_size,
)

SHIM_SETTINGS: tuple[Setting, ...] = (
    Setting("socket", DEFAULT_SOCKET, str, "the daemon's Unix socket"),
    Setting("host", "127.0.0.1", str, "address to listen on"),
    Setting("port", 5000, bounded(int, 0, 65535), "TCP port to listen on"),
    Setting("api_key", "", str, "require this bearer key (empty: no auth)", secret=True),
    Setting("api_key_file", "", str, "read the bearer key from this file"),
    Setting("max_upload_bytes", 25 << 20, parse_size, "largest audio upload (OpenAI's is 25 MiB)"),
    Setting("max_buffered_bytes", 512 << 20, parse_size,
            "upload bytes held at once across all requests; beyond it uploads get 503 overloaded"),
    Setting("connections", 64, bounded(int, 1, 1024),
            "requests forwarded to the daemon at once (the daemon's queue decides the rest)"),
    Setting("upload_timeout", 120.0, bounded(float, 1.0, 86400.0),
            "seconds a client may take to send its whole upload (then 408 upload_timeout)",
            aliases=("read_timeout",)),
    Setting("transcript_timeout", 3600.0, bounded(float, 1.0, 86400.0),
            "seconds to wait for the daemon's transcript (then 504 transcript_timeout)",
            aliases=("request_timeout",)),
    Setting("cors_origins", "", str,
            "comma-separated origins allowed by CORS (empty: CORS off); requests from any other web page get 403"),
    Setting("log_level", "info", choice(*LOG_LEVELS), "log level"),
    Setting("max_connections", 1000, bounded(int, 1, 1 << 20),
            "HTTP connections open at once (lowered to fit the file limit); beyond it the oldest idle one "
            "is closed, or the new one gets 503 when all are busy"),
    Setting("keepalive_timeout", 10.0, bounded(float, 0.5, 3600.0),
            "seconds an idle connection is kept, and that a client has to send a request's headers"),
    Setting("allowed_hosts", "", str,
            "comma-separated names this server answers to besides localhost, IP addresses and host "
            "(e.g. a reverse proxy's public name; '*': any)"),
    Setting("drain_grace", 5.0, bounded(float, 0.0, 3600.0),
            "seconds after SIGTERM that /health says 503 while requests are still taken, so a load balancer "
            "stops sending first (docs/scale-out.md)"),
    Setting("drain_timeout", 30.0, bounded(float, 0.0, 86400.0),
            "seconds requests in flight get to finish once the listener has closed (after drain_grace)"),
    Setting("agent_port", 0, bounded(int, 0, 65535),
            "TCP port for HAProxy's agent-check (up/drain/down and a weight from free lanes; 0: off)"),
)


@dataclass(frozen=True)
class ShimConfig:
    socket: str
    host: str
    port: int
    api_key: str
    api_key_file: str
    max_upload_bytes: int
    max_buffered_bytes: int
    connections: int
    upload_timeout: float
    transcript_timeout: float
    cors_origins: str
    log_level: str
    max_connections: int
    keepalive_timeout: float
    allowed_hosts: str
    drain_grace: float
    drain_timeout: float
    agent_port: int
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False, repr=False)
    config_file: str = ""

    def resolved_api_key(self, env: Mapping[str, str] = os.environ) -> str:
        """The bearer key: `api_key`, else `api_key_file`, else the systemd credential, else none.

        A key file that is empty is a configuration error, never "no key": an empty
        file must not turn authentication off without a word.
        """
        if self.api_key:
            return self.api_key
        if self.api_key_file:
            return _read_key(self.api_key_file, "api_key_file")
        # LoadCredential=whisperd-api-key in whisperd-shim.service (docs/debian.md): systemd
        # copies the key where only this service can read it; an absent credential means no key.
        credentials = env.get("CREDENTIALS_DIRECTORY")
        if credentials and (Path(credentials) / API_KEY_CREDENTIAL).exists():
            return _read_key(str(Path(credentials) / API_KEY_CREDENTIAL), "the credential")
        return ""


API_KEY_CREDENTIAL = "whisperd-api-key"


def _read_key(path: str, what: str) -> str:
    try:
        key = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{what} {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not UTF-8 text") from None
    if not key:
        raise ConfigError(f"{what} {path} is empty: write the key into it (or unset it to run without a key)")
    return key
