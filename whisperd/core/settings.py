"""The settings machinery every program uses: one frozen dataclass, built in one place.

Precedence: CLI flags > `WHISPERD_*` environment > `/etc/whisperd/whisperd.conf`
(INI; one section per program: `[whisperd]`, `[shim]`, `[whisperctl]`, `[wyoming]`) > defaults.
Every setting is declared once in a table (`Setting`), from which the flags, the
environment names, the file keys, validation and `--print-config` all follow.
Each program declares its own table next to its code (`whisperd.daemon.config`,
`shim.config`, `whisperd.client.config`, `whisperd_wyoming.config`).

A renamed setting keeps its old name as an alias: the old flag, environment
variable and file key still work, each use warns once on stderr, and giving the
old and the new name in the same place (two flags, two variables, two keys) is
an error naming both. Between places the usual precedence decides.
"""

from __future__ import annotations

import argparse
import configparser
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from whisperd.core.errors import ConfigError

DEFAULT_CONFIG_FILE = "/etc/whisperd/whisperd.conf"
DEFAULT_SOCKET = "/run/whisperd/whisperd.sock"
ENV_PREFIX = "WHISPERD_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"
LOG_LEVELS = ("debug", "info", "warning", "error")

Warn = Callable[[str], None]


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


def choice(*choices: str, hidden: tuple[str, ...] = ()) -> Callable[[str], str]:
    """One of `choices`; `hidden` ones are accepted too but never offered (e.g. a bench-only value)."""

    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices and value not in hidden:
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


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class Setting:
    name: str  # field name, INI key; flag is --name-with-dashes; env WHISPERD_NAME
    default: Any
    parse: Callable[[str], Any]
    help: str
    env: str | None = None  # override the environment name
    secret: bool = False  # never printed
    aliases: tuple[str, ...] = ()  # old names: still read as flags, env names and keys, with a warning
    # Another program's section whose key of the same name applies when ours has none
    # (whisperctl's socket: the daemon's, unless [whisperctl] says otherwise).
    fallback: str | None = None
    # The value the flag means when given alone (`--zeroconf` for `--zeroconf whisperd`); None: it needs one.
    bare: str | None = None

    @property
    def flag(self) -> str:
        return flag_of(self.name)

    @property
    def env_name(self) -> str:
        return self.env or ENV_PREFIX + self.name.upper()

    def env_name_of(self, name: str) -> str:
        """The environment name for `name`: this setting's own, or an alias's."""
        return self.env_name if name == self.name else ENV_PREFIX + name.upper()


def add_arguments(parser: argparse.ArgumentParser, settings: Sequence[Setting]) -> None:
    for s in settings:
        default = "none" if s.default is None else repr(s.default)
        old = f"; old name {', '.join(flag_of(a) for a in s.aliases)}" if s.aliases else ""
        # SUPPRESS: absent flags stay absent, so we can tell "given" from "default".
        alone = {} if s.bare is None else {"nargs": "?", "const": s.bare}
        parser.add_argument(s.flag, dest=s.name, default=argparse.SUPPRESS, metavar=s.name.upper(), **alone,
                            help=f"{s.help} [env {s.env_name}; default {default}{old}]")
        for alias in s.aliases:  # still accepted, kept out of --help
            parser.add_argument(flag_of(alias), dest=alias, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def stderr_warning(prog: str) -> Warn:
    """Warnings as one `prog: warning: ...` line each on stderr (the journal under systemd)."""
    def warn(message: str) -> None:
        print(f"{prog}: warning: {message}", file=sys.stderr, flush=True)

    return warn


def _read_file(path: str, section: str, settings: Sequence[Setting], *, required: bool,
               skip_unreadable: bool) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file {path} does not exist") from None
        return parser
    except PermissionError:
        if skip_unreadable:
            return parser
        raise ConfigError(f"config file {path} is not readable") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
    except configparser.Error as exc:
        raise ConfigError(f"config file {path} is not valid INI: {exc}".replace("\n", " ")) from None
    if parser.has_section(section):
        known = {name for s in settings for name in (s.name, *s.aliases)}
        unknown = sorted(set(parser.options(section)) - known)
        if unknown:
            raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)} in [{section}]")
    return parser


@dataclass(frozen=True)
class _Place:
    """One place a value may come from: the flags, the environment, or a section of the file."""

    where: str  # "the flags", "the environment", "[shim] of /etc/whisperd/whisperd.conf"
    values: Mapping[str, Any]
    key: Callable[[Setting, str], str]  # (setting, one of its names) -> its key in `values`
    short: Callable[[str], str]  # key -> as the user writes it ("--read-timeout")
    label: Callable[[str], str]  # key -> how an error names it ("flag --read-timeout")
    source: Callable[[str], str]  # key -> what --print-config says ("cli", "env:X", "file:P")
    aliases: bool = True  # whether old names count here


def _places(section: str, path: str, cli: Mapping[str, Any], env: Mapping[str, str],
            file: configparser.ConfigParser, fallback: str | None) -> list[_Place]:
    def same(setting: Setting, name: str) -> str:
        return name

    def in_file(name: str) -> _Place:
        values = dict(file.items(name)) if file.has_section(name) else {}
        source = f"file:{path}" if name == section else f"file:{path} [{name}]"
        return _Place(f"[{name}] of {path}", values, same, str, lambda k: f"key {k!r} in [{name}] of {path}",
                      lambda k: source, aliases=name == section)

    places = [
        _Place("the flags", cli, same, flag_of, lambda k: f"flag {flag_of(k)}", lambda k: "cli"),
        _Place("the environment", env, Setting.env_name_of, str, lambda k: f"environment variable {k}",
               lambda k: f"env:{k}"),
        in_file(section),
    ]
    return places + [in_file(fallback)] if fallback else places


def _lookup(s: Setting, places: Sequence[_Place], warn: Warn) -> tuple[Any, str, str] | None:
    """(raw value, source, label) from the first place that has the setting, else None."""
    for place in places:
        names = (s.name, *s.aliases) if place.aliases else (s.name,)
        given = [(name, place.key(s, name)) for name in names if place.key(s, name) in place.values]
        if not given:
            continue
        name, key = given[0]
        new = place.short(place.key(s, s.name))
        if len(given) > 1:
            both = " and ".join(place.short(k) for _, k in given)
            raise ConfigError(f"{place.where}: {both} are one setting ({s.name}): give only {new}")
        source = place.source(key)
        if name != s.name:
            warn(f"{place.label(key)} is deprecated: use {new}")
            source += f" (old name {name})"
        return place.values[key], source, place.label(key)
    return None


def build(
    cls: type,
    settings: Sequence[Setting],
    section: str,
    cli: Mapping[str, Any],
    env: Mapping[str, str],
    config_file: str | None,
    *,
    warn: Warn | None = None,
    skip_unreadable_default: bool = False,
) -> Any:
    """Merge CLI > env > file > defaults, validate each value, return a frozen config.

    `cli` maps a setting's name (or an alias) to its raw flag value. A missing
    default file is fine; a missing explicit one (`--config`, `WHISPERD_CONFIG`)
    is a ConfigError. `skip_unreadable_default`: a default file this user may not
    read counts as missing (whisperctl, run by users outside the file's group).
    """
    warn = warn or stderr_warning(section)
    path = config_file or env.get(CONFIG_ENV) or DEFAULT_CONFIG_FILE
    explicit = bool(config_file or env.get(CONFIG_ENV))
    file = _read_file(path, section, settings, required=explicit,
                      skip_unreadable=skip_unreadable_default and not explicit)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    places: dict[str | None, list[_Place]] = {}  # by fallback section: most settings share one list
    for s in settings:
        if s.fallback not in places:
            places[s.fallback] = _places(section, path, cli, env, file, s.fallback)
        found = _lookup(s, places[s.fallback], warn)
        if found is None:
            values[s.name], sources[s.name] = s.default, "default"
            continue
        raw, sources[s.name], label = found
        try:
            values[s.name] = s.parse(str(raw))
        except ValueError as exc:
            raise ConfigError(f"bad value for {label}: {exc}") from None
    return cls(**values, sources=sources, config_file=path)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """`--config FILE` and `--print-config`, as every program takes them."""
    parser.add_argument("--config", default=None, metavar="FILE",
                        help=f"INI file [env {CONFIG_ENV}; default {DEFAULT_CONFIG_FILE}]")
    parser.add_argument("--print-config", action="store_true", help="show the effective settings and exit")


def from_command_line(
    prog: str, description: str, cls: type, settings: Sequence[Setting], section: str,
    argv: Sequence[str] | None, env: Mapping[str, str],
) -> tuple[Any, bool]:
    """Parse the flags, merge everything, return (config, whether --print-config was given).

    Raises ConfigError; `--help` and `--version` exit as argparse does.
    """
    from whisperd import __version__

    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_config_arguments(parser)
    parser.add_argument("--version", action="version", version=f"{prog} {__version__}")
    add_arguments(parser, settings)
    args = parser.parse_args(argv)
    cli = {k: v for k, v in vars(args).items() if k not in ("config", "print_config")}
    return build(cls, settings, section, cli, env, args.config, warn=stderr_warning(prog)), args.print_config


def _file_state(path: str) -> str:
    if not os.path.exists(path):
        return " (absent)"
    if not os.access(path, os.R_OK):
        return " (not readable by this user: skipped)"
    return ""


def describe(config: Any, settings: Sequence[Setting]) -> str:
    """The effective configuration and where each value came from (`--print-config`)."""
    lines = [f"# config file: {config.config_file}{_file_state(config.config_file)}"]
    for s in settings:
        value = getattr(config, s.name)
        if s.secret and value:
            value = "<set>"
        elif s.name == "socket_mode":
            value = oct(value)
        elif value is None:
            value = ""  # as an empty value in the file reads
        lines.append(f"{s.name} = {value}    # {config.sources.get(s.name, 'default')}")
    return "\n".join(lines)
