"""The HTTP shim's settings (`[shim]` in the config file) and its frozen config."""

from __future__ import annotations

import dataclasses
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
    Setting("cors_origins", "", str, "comma-separated origins allowed by CORS (empty: CORS off)"),
    Setting("log_level", "info", choice(*LOG_LEVELS), "log level"),
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
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False, repr=False)
    config_file: str = ""

    def resolved_api_key(self) -> str:
        if self.api_key:
            return self.api_key
        if self.api_key_file:
            try:
                return Path(self.api_key_file).read_text().strip()
            except OSError as exc:
                raise ConfigError(f"api_key_file {self.api_key_file}: {exc.strerror}") from None
        return ""
