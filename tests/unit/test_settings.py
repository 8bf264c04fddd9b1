"""The settings machinery: precedence, aliases (old names), fallback sections, the file's states."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Mapping

import pytest

from shim.config import SHIM_SETTINGS, ShimConfig
from whisperd.core.errors import ConfigError
from whisperd.core.settings import (
    DEFAULT_CONFIG_FILE,
    Setting,
    add_arguments,
    bounded,
    build,
    describe,
    from_command_line,
)

SETTINGS = (
    Setting("upload_timeout", 120.0, bounded(float, 1.0, 1000.0), "seconds", aliases=("read_timeout",)),
    Setting("socket", "/run/default.sock", str, "the socket", fallback="whisperd"),
    Setting("level", "info", str, "a plain one"),
)


@dataclass(frozen=True)
class Config:
    upload_timeout: float
    socket: str
    level: str
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False)
    config_file: str = ""


def make(tmp_path, text: str | None = None, *, cli: dict | None = None, env: dict | None = None):
    """(config, warnings) for `text` as the [prog] file, the given flags and environment."""
    path = tmp_path / "w.conf"
    if text is not None:
        path.write_text(text)
    warnings: list[str] = []
    config = build(Config, SETTINGS, "prog", cli or {}, env or {}, str(path) if text is not None else None,
                   warn=warnings.append)
    return config, warnings


# --- precedence ---------------------------------------------------------------------------


def test_flag_beats_env_beats_file_beats_default(tmp_path):
    text = "[prog]\nupload_timeout = 30\nsocket = /file.sock\nlevel = debug\n"
    config, _ = make(tmp_path, text, cli={"upload_timeout": "10"}, env={"WHISPERD_SOCKET": "/env.sock"})
    assert (config.upload_timeout, config.socket, config.level) == (10.0, "/env.sock", "debug")
    assert config.sources == {"upload_timeout": "cli", "socket": "env:WHISPERD_SOCKET",
                              "level": f"file:{tmp_path / 'w.conf'}"}


def test_nothing_given_is_all_defaults_and_a_missing_default_file_is_fine(monkeypatch):
    monkeypatch.setattr("whisperd.core.settings.DEFAULT_CONFIG_FILE", "/nonexistent/whisperd.conf")
    config = build(Config, SETTINGS, "prog", {}, {}, None, warn=pytest.fail)
    assert (config.upload_timeout, config.socket, config.level) == (120.0, "/run/default.sock", "info")
    assert set(config.sources.values()) == {"default"}
    assert describe(config, SETTINGS).splitlines()[0] == "# config file: /nonexistent/whisperd.conf (absent)"


def test_a_missing_explicit_file_is_an_error_by_flag_or_env(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        build(Config, SETTINGS, "prog", {}, {}, str(tmp_path / "nope.conf"))
    with pytest.raises(ConfigError, match="nope.conf does not exist"):
        build(Config, SETTINGS, "prog", {}, {"WHISPERD_CONFIG": str(tmp_path / "nope.conf")}, None)


def test_unknown_keys_are_an_error_naming_them(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key\(s\) upload_timeot in \[prog\]"):
        make(tmp_path, "[prog]\nupload_timeot = 3\n")


def test_a_bad_value_names_where_it_came_from(tmp_path):
    with pytest.raises(ConfigError, match="environment variable WHISPERD_READ_TIMEOUT: must be between"):
        make(tmp_path, "", env={"WHISPERD_READ_TIMEOUT": "0"})


# --- aliases: the old names keep working -------------------------------------------------------


@pytest.mark.parametrize("place, given, source, warned", [
    ("cli", {"cli": {"read_timeout": "5"}}, "cli (old name read_timeout)", "flag --read-timeout"),
    ("env", {"env": {"WHISPERD_READ_TIMEOUT": "5"}}, "env:WHISPERD_READ_TIMEOUT (old name read_timeout)",
     "environment variable WHISPERD_READ_TIMEOUT"),
    ("file", {"text": "[prog]\nread_timeout = 5\n"}, "file:{path} (old name read_timeout)",
     "key 'read_timeout' in [prog] of {path}"),
])
def test_an_old_name_is_read_reported_and_warned_once(tmp_path, place, given, source, warned):
    config, warnings = make(tmp_path, given.get("text", ""), cli=given.get("cli"), env=given.get("env"))
    path = str(tmp_path / "w.conf")
    assert config.upload_timeout == 5.0
    assert config.sources["upload_timeout"] == source.format(path=path)
    assert len(warnings) == 1 and warnings[0].startswith(warned.format(path=path) + " is deprecated: use ")
    assert f"upload_timeout = 5.0    # {source.format(path=path)}" in describe(config, SETTINGS)


def test_the_new_name_never_warns(tmp_path):
    _, warnings = make(tmp_path, "[prog]\nupload_timeout = 5\n", env={"WHISPERD_UPLOAD_TIMEOUT": "6"},
                       cli={"upload_timeout": "7"})
    assert warnings == []


@pytest.mark.parametrize("given, needle", [
    ({"cli": {"upload_timeout": "5", "read_timeout": "6"}}, "the flags: --upload-timeout and --read-timeout"),
    ({"env": {"WHISPERD_UPLOAD_TIMEOUT": "5", "WHISPERD_READ_TIMEOUT": "6"}},
     "the environment: WHISPERD_UPLOAD_TIMEOUT and WHISPERD_READ_TIMEOUT"),
    ({"text": "[prog]\nread_timeout = 5\nupload_timeout = 6\n"}, "upload_timeout and read_timeout"),
])
def test_old_and_new_name_in_one_place_is_an_error_naming_both(tmp_path, given, needle):
    with pytest.raises(ConfigError) as err:
        make(tmp_path, given.get("text", ""), cli=given.get("cli"), env=given.get("env"))
    assert needle in err.value.message and "are one setting (upload_timeout)" in err.value.message


def test_between_places_precedence_decides_whatever_the_names(tmp_path):
    config, warnings = make(tmp_path, "[prog]\nupload_timeout = 30\n", env={"WHISPERD_READ_TIMEOUT": "20"})
    assert config.upload_timeout == 20.0 and len(warnings) == 1
    config, warnings = make(tmp_path, "[prog]\nread_timeout = 30\n", env={"WHISPERD_UPLOAD_TIMEOUT": "20"})
    assert config.upload_timeout == 20.0 and warnings == []  # the file's old key is never read


def test_the_old_flag_parses_but_stays_out_of_help():
    parser = argparse.ArgumentParser()
    add_arguments(parser, SETTINGS)
    assert vars(parser.parse_args(["--read-timeout", "4"])) == {"read_timeout": "4"}
    assert vars(parser.parse_args([])) == {}  # absent flags stay absent
    text = parser.format_help()
    assert "--upload-timeout" in text and "old name --read-timeout" in text
    assert "--read-timeout READ" not in text and "\n  --read-timeout" not in text


# --- fallback to another program's section ---------------------------------------------------


def test_fallback_section_applies_when_ours_is_silent(tmp_path):
    config, _ = make(tmp_path, "[whisperd]\nsocket = /daemon.sock\nmodel = base\n")
    assert config.socket == "/daemon.sock"
    assert config.sources["socket"] == f"file:{tmp_path / 'w.conf'} [whisperd]"
    # ...and its other keys are none of our business (no unknown-key error for 'model').


def test_our_section_and_env_beat_the_fallback_section(tmp_path):
    text = "[whisperd]\nsocket = /daemon.sock\n[prog]\nsocket = /ours.sock\n"
    assert make(tmp_path, text)[0].socket == "/ours.sock"
    assert make(tmp_path, text, env={"WHISPERD_SOCKET": "/env.sock"})[0].socket == "/env.sock"


def test_only_settings_that_ask_for_it_fall_back(tmp_path):
    config, _ = make(tmp_path, "[whisperd]\nlevel = debug\nupload_timeout = 9\n")
    assert (config.level, config.upload_timeout) == ("info", 120.0)


# --- the file's states -------------------------------------------------------------------------


def _unreadable(monkeypatch, path: str) -> None:
    real_open = open

    def fake_open(name, *args, **kwargs):
        if str(name) == path:
            raise PermissionError(13, "Permission denied", name)
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr("whisperd.core.settings.open", fake_open, raising=False)


def test_an_unreadable_file_is_an_error_unless_the_program_skips_an_unreadable_default(monkeypatch, tmp_path):
    path = tmp_path / "w.conf"
    path.write_text("[prog]\nlevel = debug\n")
    monkeypatch.setattr("whisperd.core.settings.DEFAULT_CONFIG_FILE", str(path))
    _unreadable(monkeypatch, str(path))
    with pytest.raises(ConfigError, match="is not readable"):
        build(Config, SETTINGS, "prog", {}, {}, None)
    config = build(Config, SETTINGS, "prog", {}, {}, None, skip_unreadable_default=True)
    assert config.level == "info" and config.config_file == str(path)
    with pytest.raises(ConfigError, match="is not readable"):  # named explicitly: still an error
        build(Config, SETTINGS, "prog", {}, {}, str(path), skip_unreadable_default=True)


def test_broken_ini_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not valid INI"):
        make(tmp_path, "no section header\n")


# --- a real table: the shim's renamed timeouts ----------------------------------------------------


def test_shim_timeouts_old_flags_env_and_keys_still_work(tmp_path, capsys):
    conf = tmp_path / "shim.conf"
    conf.write_text("[shim]\nrequest_timeout = 77\n")
    config, _ = from_command_line("whisperd-shim", "", ShimConfig, SHIM_SETTINGS, "shim",
                                  ["--config", str(conf), "--read-timeout", "9"], {})
    assert (config.upload_timeout, config.transcript_timeout) == (9.0, 77.0)
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "whisperd-shim: warning: flag --read-timeout is deprecated: use --upload-timeout",
        f"whisperd-shim: warning: key 'request_timeout' in [shim] of {conf} is deprecated: use transcript_timeout",
    ]
    config, _ = from_command_line("whisperd-shim", "", ShimConfig, SHIM_SETTINGS, "shim", ["--config", "/dev/null"],
                                  {"WHISPERD_REQUEST_TIMEOUT": "55", "WHISPERD_READ_TIMEOUT": "5"})
    assert (config.upload_timeout, config.transcript_timeout) == (5.0, 55.0)


def test_shim_defaults_are_unchanged_by_the_rename():
    config, _ = from_command_line("whisperd-shim", "", ShimConfig, SHIM_SETTINGS, "shim", ["--config", "/dev/null"],
                                  {})
    assert (config.upload_timeout, config.transcript_timeout) == (120.0, 3600.0)
    assert DEFAULT_CONFIG_FILE == "/etc/whisperd/whisperd.conf"


def test_a_setting_with_a_bare_value_takes_its_flag_alone():
    table = (Setting("zeroconf", "", str, "name", bare="whisperd"), Setting("level", "info", str, "a plain one"))
    parser = argparse.ArgumentParser()
    add_arguments(parser, table)
    assert vars(parser.parse_args(["--zeroconf"])) == {"zeroconf": "whisperd"}
    assert vars(parser.parse_args(["--zeroconf", "kitchen", "--level", "debug"])) == {"zeroconf": "kitchen",
                                                                                       "level": "debug"}
    assert vars(parser.parse_args([])) == {}  # absent stays absent: the file or the default decides
    with pytest.raises(SystemExit):
        parser.parse_args(["--level"])  # a plain one still needs its value
