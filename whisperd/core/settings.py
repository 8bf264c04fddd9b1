"""The settings machinery every program uses: one frozen dataclass, built in one place.

Precedence: CLI flags > `WHISPERD_*` environment > `/etc/whisperd/whisperd.conf`
(INI; one section per program: `[whisperd]`, `[shim]`, `[whisperctl]`) > defaults.
Every setting is declared once in a table (`Setting`), from which the flags, the
environment names, the file keys, validation and `--print-config` all follow.
Each program declares its own table next to its code (`whisperd.daemon.config`,
`shim.config`, `whisperd.client.cli`).
"""

from __future__ import annotations

import argparse
import configparser
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from whisperd.core.errors import ConfigError

DEFAULT_CONFIG_FILE = "/etc/whisperd/whisperd.conf"
DEFAULT_SOCKET = "/run/whisperd/whisperd.sock"
ENV_PREFIX = "WHISPERD_"
LOG_LEVELS = ("debug", "info", "warning", "error")


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def parse_size(text: str) -> int:
    """`26214400`, `25M`, `25MiB`, `1G` → bytes."""
    value = text.strip().upper().removesuffix("IB").removesuffix("B")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(value[-1:], 1)
    number = value[:-1] if value[-1:] in "KMG" and value[-1:] else value
    result = int(float(number) * scale)
    if result < 0:
        raise ValueError("must not be negative")
    return result


def parse_mode(text: str) -> int:
    return int(text, 8)


def choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {text!r}")
        return value

    return parse


def bounded(kind: type, low: float, high: float) -> Callable[[str], Any]:
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
