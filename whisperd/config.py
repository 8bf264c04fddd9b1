"""Configuration: one frozen dataclass per program, built in one place.

Precedence: CLI flags > `WHISPERD_*` environment > `/etc/whisperd/whisperd.conf`
(INI; `[whisperd]` for the daemon, `[shim]` for the HTTP shim) > defaults. Every
setting is declared once in a table (`Setting`), from which the flags, the
environment names, the file keys, validation and `--print-config` all follow.
Stdlib only: the shim imports this too.
"""

from __future__ import annotations

import argparse
import configparser
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from whisperd.errors import ConfigError

DEFAULT_CONFIG_FILE = "/etc/whisperd/whisperd.conf"
DEFAULT_SOCKET = "/run/whisperd/whisperd.sock"
ENV_PREFIX = "WHISPERD_"
LOG_LEVELS = ("debug", "info", "warning", "error")


def _default_cache_dir() -> str:
    # Under systemd, StateDirectory= hands us a writable place; otherwise XDG.
    if os.environ.get("STATE_DIRECTORY"):
        return os.environ["STATE_DIRECTORY"].split(":")[0]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "whisperd")


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _parse_size(text: str) -> int:
    """`26214400`, `25M`, `25MiB`, `1G` → bytes."""
    value = text.strip().upper().removesuffix("IB").removesuffix("B")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(value[-1:], 1)
    number = value[:-1] if value[-1:] in "KMG" and value[-1:] else value
    result = int(float(number) * scale)
    if result < 0:
        raise ValueError("must not be negative")
    return result


def _parse_mode(text: str) -> int:
    return int(text, 8)


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {text!r}")
        return value

    return parse


def _bounded(kind: type, low: float, high: float) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if not low <= value <= high:
            raise ValueError(f"must be between {low:g} and {high:g}, got {text}")
        return value

    return parse


@dataclass(frozen=True)
class Setting:
    name: str  # field name, INI key; flag is --name-with-dashes; env WHISPERD_NAME
    default: Any
    parse: Callable[[str], Any]
    help: str
    env: str | None = None  # override the environment name
    secret: bool = False  # never printed

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env_name(self) -> str:
        return self.env or ENV_PREFIX + self.name.upper()


DAEMON_SETTINGS: tuple[Setting, ...] = (
    Setting("socket", DEFAULT_SOCKET, str, "Unix socket path to listen on"),
    Setting("socket_mode", 0o660, _parse_mode, "socket file mode (octal)"),
    Setting("socket_group", "", str, "group that owns the socket (empty: the daemon's)"),
    Setting("model", "tiny.en", str, "model name, CTranslate2 directory or .pt checkpoint"),
    Setting("extra_models", "*", str,
            "other installed models requests may name, served by cold workers (comma-separated; '*' = all)"),
    Setting("engine", "auto", _choice("auto", "faster-whisper", "openai-whisper", "null"),
            "inference engine; auto picks by the model's kind"),
    Setting("device", "auto", _choice("auto", "cpu", "cuda"), "where to run the model"),
    Setting("compute_type", "auto", str, "precision: auto, float32, float16, int8, int8_float16..."),
    Setting("cpu_threads", 0, _bounded(int, 0, 1024),
            "CPU threads for the hot worker, shared by its slots (0: all cores)"),
    Setting("hot_slots", 0, _bounded(int, 0, 64),
            "requests the hot worker decodes at once on one copy of the model (0: auto - up to 4 on CPU "
            "with faster-whisper, 1 on CUDA and with openai-whisper)"),
    Setting("beam_size", 5, _bounded(int, 1, 16), "default beam size"),
    Setting("no_speech_threshold", 0.6, _bounded(float, 0.0, 1.0),
            "drop segments whose no-speech probability is above this"),
    Setting("vad_filter", False, _parse_bool, "drop non-speech with faster-whisper's Silero VAD"),
    Setting("short_path", "on", _choice("off", "on"),
            "decode audio under ~20 s on a shorter encoder context, guarded by a fallback to the 30 s path "
            "(docs/performance.md, section commands)"),
    Setting("max_audio_bytes", 64 << 20, _parse_size, "largest audio file accepted on the socket"),
    Setting("max_audio_seconds", 4 * 3600.0, _bounded(float, 1.0, 1e6), "longest audio accepted"),
    Setting("max_cold_workers", 2, _bounded(int, 0, 64),
            "cold worker processes started when the hot worker is busy (0: hot worker only)"),
    Setting("worker_idle_timeout", 60.0, _bounded(float, 1.0, 86400.0),
            "seconds an idle cold worker stays loaded (exits are staggered)"),
    Setting("long_audio_seconds", 30.0, _bounded(float, 1.0, 86400.0),
            "audio longer than this goes to a cold worker, keeping the hot one for commands"),
    Setting("worker_timeout", 300.0, _bounded(float, 0.1, 86400.0),
            "seconds a cold worker may take per minute of audio (at least one minute's worth) before it is killed"),
    Setting("queue_size", 64, _bounded(int, 1, 100000), "requests waiting beyond this are refused"),
    Setting("shutdown_grace", 30.0, _bounded(float, 0.0, 3600.0),
            "seconds to finish in-flight work on SIGTERM"),
    Setting("cache_dir", "", str, "where converted/assembled models are kept (default: state dir or ~/.cache/whisperd)"),
    Setting("models_dir", "", str, "folder of extra models (<name>/model.bin or <name>.pt)"),
    Setting("log_level", "info", _choice(*LOG_LEVELS), "log level"),
)

SHIM_SETTINGS: tuple[Setting, ...] = (
    Setting("socket", DEFAULT_SOCKET, str, "the daemon's Unix socket"),
    Setting("host", "127.0.0.1", str, "address to listen on"),
    Setting("port", 5000, _bounded(int, 0, 65535), "TCP port to listen on"),
    Setting("api_key", "", str, "require this bearer key (empty: no auth)", secret=True),
    Setting("api_key_file", "", str, "read the bearer key from this file"),
    Setting("max_upload_bytes", 25 << 20, _parse_size, "largest audio upload (OpenAI's is 25 MiB)"),
    Setting("max_buffered_bytes", 512 << 20, _parse_size,
            "upload bytes held at once across all requests; beyond it uploads get 503 overloaded"),
    Setting("connections", 64, _bounded(int, 1, 1024),
            "requests forwarded to the daemon at once (the daemon's queue decides the rest)"),
    Setting("read_timeout", 120.0, _bounded(float, 1.0, 86400.0),
            "seconds a client may take to send its whole upload (slow uploads are cut off with 408)"),
    Setting("request_timeout", 3600.0, _bounded(float, 1.0, 86400.0), "seconds to wait for a transcript"),
    Setting("cors_origins", "", str, "comma-separated origins allowed by CORS (empty: CORS off)"),
    Setting("log_level", "info", _choice(*LOG_LEVELS), "log level"),
)


@dataclass(frozen=True)
class DaemonConfig:
    socket: str
    socket_mode: int
    socket_group: str
    model: str
    extra_models: str
    engine: str
    device: str
    compute_type: str
    cpu_threads: int
    hot_slots: int
    beam_size: int
    no_speech_threshold: float
    vad_filter: bool
    short_path: str
    max_audio_bytes: int
    max_audio_seconds: float
    max_cold_workers: int
    worker_idle_timeout: float
    long_audio_seconds: float
    worker_timeout: float
    queue_size: int
    shutdown_grace: float
    cache_dir: str
    models_dir: str
    log_level: str
    # Where each value came from ("default", "file:/etc/...", "env:WHISPERD_X", "cli").
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False, repr=False)
    config_file: str = ""

    @property
    def cache_path(self) -> Path:
        return Path(self.cache_dir or _default_cache_dir())

    @property
    def models_path(self) -> Path:
        return Path(self.models_dir) if self.models_dir else self.cache_path / "models"


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
    read_timeout: float
    request_timeout: float
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


def add_arguments(parser: argparse.ArgumentParser, settings: Sequence[Setting]) -> None:
    for s in settings:
        # SUPPRESS: absent flags stay absent, so we can tell "given" from "default".
        parser.add_argument(s.flag, dest=s.name, default=argparse.SUPPRESS, metavar=s.name.upper(),
                            help=f"{s.help} [env {s.env_name}; default {s.default!r}]")


def _read_file(path: str, section: str, settings: Sequence[Setting], required: bool) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file {path} does not exist") from None
        return {}
    except PermissionError:
        raise ConfigError(f"config file {path} is not readable") from None
    except configparser.Error as exc:
        raise ConfigError(f"config file {path} is not valid INI: {exc}".replace("\n", " ")) from None
    if not parser.has_section(section):
        return {}
    known = {s.name for s in settings}
    values = dict(parser.items(section))
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)} in [{section}]")
    return values


def build(
    cls: type,
    settings: Sequence[Setting],
    section: str,
    cli: Mapping[str, Any],
    env: Mapping[str, str],
    config_file: str | None,
) -> Any:
    """Merge CLI > env > file > defaults, validate each value, return a frozen config."""
    path = config_file or env.get(ENV_PREFIX + "CONFIG") or DEFAULT_CONFIG_FILE
    required = bool(config_file or env.get(ENV_PREFIX + "CONFIG"))
    file_values = _read_file(path, section, settings, required)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for s in settings:
        if s.name in cli:
            raw, where = cli[s.name], "cli"
            label = f"flag {s.flag}"
        elif s.env_name in env:
            raw, where = env[s.env_name], f"env:{s.env_name}"
            label = f"environment variable {s.env_name}"
        elif s.name in file_values:
            raw, where = file_values[s.name], f"file:{path}"
            label = f"key {s.name!r} in [{section}] of {path}"
        else:
            values[s.name], sources[s.name] = s.default, "default"
            continue
        try:
            values[s.name] = s.parse(str(raw))
        except ValueError as exc:
            raise ConfigError(f"bad value for {label}: {exc}") from None
        sources[s.name] = where
    return cls(**values, sources=sources, config_file=path)


def from_command_line(
    prog: str, description: str, cls: type, settings: Sequence[Setting], section: str,
    argv: Sequence[str] | None, env: Mapping[str, str],
) -> tuple[Any, bool]:
    """Parse the flags, merge everything, return (config, whether --print-config was given).

    Raises ConfigError; `--help` and `--version` exit as argparse does.
    """
    from whisperd import __version__

    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", default=None, help=f"INI file (default {DEFAULT_CONFIG_FILE})")
    parser.add_argument("--print-config", action="store_true", help="show the effective settings and exit")
    parser.add_argument("--version", action="version", version=f"{prog} {__version__}")
    add_arguments(parser, settings)
    args = parser.parse_args(argv)
    cli = {k: v for k, v in vars(args).items() if k not in ("config", "print_config")}
    return build(cls, settings, section, cli, env, args.config), args.print_config


def describe(config: Any, settings: Sequence[Setting]) -> str:
    """The effective configuration and where each value came from (`--print-config`)."""
    lines = [f"# config file: {config.config_file}"]
    for s in settings:
        value = getattr(config, s.name)
        if s.secret and value:
            value = "<set>"
        elif s.name == "socket_mode":
            value = oct(value)
        lines.append(f"{s.name} = {value}    # {config.sources.get(s.name, 'default')}")
    return "\n".join(lines)
