"""whisperctl's settings: flags > env > [whisperctl] > [whisperd]'s socket > default; no daemon needed."""

from __future__ import annotations

from pathlib import Path

import os

import pytest

from whisperd.client import cli
from whisperd.client.cli import build_parser, main
from whisperd.client.config import ctl_config
from whisperd.core.errors import ConfigError
from whisperd.core.settings import DEFAULT_SOCKET


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("WHISPERD_"):
            monkeypatch.delenv(name)
    # The default file is this machine's business, not the test's.
    monkeypatch.setattr("whisperd.core.settings.DEFAULT_CONFIG_FILE", str(tmp_path / "absent.conf"))


def config_of(*argv: str, env: dict[str, str] | None = None):
    args = build_parser().parse_args([*argv, "status"])
    return ctl_config(vars(args), args.config, env or {})


def write(tmp_path, text: str) -> str:
    path = tmp_path / "whisperd.conf"
    path.write_text(text)
    return str(path)


def test_defaults_without_any_file():
    config = config_of()
    assert (config.socket, config.timeout) == (DEFAULT_SOCKET, None)
    assert config.sources == {"socket": "default", "timeout": "default", "models_dir": "default"}


def test_flag_beats_env_beats_whisperctl_section_beats_whisperd_section(tmp_path):
    conf = write(tmp_path, "[whisperd]\nsocket = /d.sock\n[whisperctl]\nsocket = /c.sock\ntimeout = 30\n")
    env = {"WHISPERD_SOCKET": "/env.sock"}
    assert config_of("--config", conf, "--socket", "/flag.sock", env=env).socket == "/flag.sock"
    assert config_of("--config", conf, env=env).socket == "/env.sock"
    config = config_of("--config", conf)
    assert (config.socket, config.timeout) == ("/c.sock", 30.0)
    assert config.sources == {"socket": f"file:{conf}", "timeout": f"file:{conf}", "models_dir": "default"}
    assert config_of("--config", conf, "--timeout", "5", env={"WHISPERD_TIMEOUT": "7"}).timeout == 5.0
    assert config_of("--config", conf, env={"WHISPERD_TIMEOUT": "7"}).timeout == 7.0


def test_the_daemons_socket_is_used_when_whisperctl_names_none(tmp_path):
    conf = write(tmp_path, "[whisperd]\nsocket = /srv/whisperd.sock\nmodel = base\n[whisperctl]\ntimeout = 9\n")
    config = config_of("--config", conf)
    assert config.socket == "/srv/whisperd.sock"
    assert config.sources["socket"] == f"file:{conf} [whisperd]"


def test_whisperd_config_env_names_the_file(tmp_path):
    conf = write(tmp_path, "[whisperd]\nsocket = /srv/w.sock\n")
    assert config_of(env={"WHISPERD_CONFIG": conf}).socket == "/srv/w.sock"


def test_the_default_file_is_read_when_present(monkeypatch, tmp_path):
    conf = write(tmp_path, "[whisperd]\nsocket = /srv/w.sock\n")
    monkeypatch.setattr("whisperd.core.settings.DEFAULT_CONFIG_FILE", conf)
    assert config_of().socket == "/srv/w.sock"


def test_empty_timeout_waits_and_a_bad_one_is_refused(tmp_path):
    assert config_of("--config", write(tmp_path, "[whisperctl]\ntimeout =\n")).timeout is None
    for bad in ("0", "-1", "inf", "soon"):
        with pytest.raises(ConfigError, match="flag --timeout"):
            config_of("--timeout", bad)


@pytest.mark.parametrize("text, needle", [
    ("[whisperctl]\nsockett = /x\n", "unknown key(s) sockett in [whisperctl]"),
    ("[whisperctl]\ntimeout = never\n", "key 'timeout' in [whisperctl]"),
    ("not ini\n", "not valid INI"),
])
def test_config_errors_exit_2_naming_the_key(tmp_path, capsys, text, needle):
    assert main(["--config", write(tmp_path, text), "status"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("whisperctl: error: ") and needle in err


def test_a_missing_explicit_file_exits_2(tmp_path, capsys):
    missing = str(tmp_path / "nope.conf")
    assert main(["--config", missing, "status"]) == 2
    assert f"config file {missing} does not exist" in capsys.readouterr().err


def test_a_missing_explicit_file_by_env_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WHISPERD_CONFIG", str(tmp_path / "nope.conf"))
    assert main(["status"]) == 2


def test_print_config_needs_no_command_and_shows_sources(tmp_path, capsys):
    conf = write(tmp_path, "[whisperd]\nsocket = /srv/w.sock\n")
    assert main(["--config", conf, "--print-config"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"# config file: {conf}", f"socket = /srv/w.sock    # file:{conf} [whisperd]",
                   "timeout =     # default", "models_dir =     # default"]


def test_no_command_is_still_a_usage_error(capsys):
    assert main([]) == 2
    assert "required: COMMAND" in capsys.readouterr().err


def test_the_resolved_socket_reaches_the_command(tmp_path, capsys):
    # Nothing listens there: the unreachable message names the socket from the file.
    sock = str(tmp_path / "nothing.sock")
    conf = write(tmp_path, f"[whisperd]\nsocket = {sock}\n")
    assert main(["--config", conf, "status"]) == cli.EXIT_UNREACHABLE
    assert f"no socket at {sock}" in capsys.readouterr().err


def test_models_dir_falls_back_to_the_daemons_section(tmp_path):
    conf = write(tmp_path, "[whisperd]\nmodels_dir = /srv/models\n")
    assert config_of("--config", conf).models_path == Path("/srv/models")
    conf = write(tmp_path, "[whisperd]\nmodels_dir = /srv/models\n[whisperctl]\nmodels_dir = /x\n")
    assert config_of("--config", conf).models_path == Path("/x")
    assert config_of("--config", conf, "--models-dir", "/flag").models_path == Path("/flag")
