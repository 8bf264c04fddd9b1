"""Issue 15's pure rules: which Host and Origin pass, log escaping, field caps, the key's sources."""

from __future__ import annotations

import dataclasses
import io
import logging

import pytest

from shim.config import API_KEY_CREDENTIAL, SHIM_SETTINGS, ShimConfig
from shim.cors import Cors, parse_origins
from shim.errors import HTTPError
from shim.form import MAX_PARTS, MAX_REPEATS, AudioForm, FieldCounter, apply_field
from shim.guard import Guard, host_name, parse_hosts
from whisperd.core.errors import ConfigError
from whisperd.core.logs import escape_controls, setup_logging
from whisperd.core.settings import build


@pytest.mark.parametrize("header, name", [
    ("127.0.0.1:5000", "127.0.0.1"), ("[::1]:5000", "::1"), ("LocalHost", "localhost"),
    ("stt.example.org.", "stt.example.org"), ("a.example:80", "a.example"), ("::1", "::1"),
])
def test_host_name(header, name):
    assert host_name(header) == name


def test_which_hosts_pass():
    guard = Guard("127.0.0.1", parse_hosts("stt.example.org, Box.lan"), Cors(frozenset()))
    for ok in ("localhost:5000", "127.0.0.1", "[::1]:5000", "10.0.0.7:5000", "[fe80::1]", "app.localhost",
               "STT.example.org", "box.lan:5000", None, ""):
        assert guard.host_allowed(ok), ok
    for refused in ("attacker.example", "127.0.0.1.nip.io", "localhost.attacker.example", "stt.example.org.evil"):
        assert not guard.host_allowed(refused), refused
    assert Guard("0.0.0.0", parse_hosts("*"), Cors(frozenset())).host_allowed("anything.example")
    assert Guard("box.lan", frozenset(), Cors(frozenset())).host_allowed("box.lan:5000")


def test_escape_controls():
    assert escape_controls("a\nb\rc\td") == "a\\nb\\rc\\td"
    assert escape_controls("\x1b[31mred\x7f\x85\u2028") == "\\x1b[31mred\\x7f\\x85\\u2028"
    assert escape_controls("naïve – ok") == "naïve – ok"


def test_logged_arguments_cannot_start_a_line(monkeypatch):
    stream = io.StringIO()
    setup_logging("info", journald=True, stream=stream)
    logging.getLogger("whisperd.test").info("refused: %s (%d)", "x\n<3>whisperd: forged", 7)
    logging.getLogger("whisperd.test").info("mapping %(name)s", {"name": "y\nz"})
    lines = stream.getvalue().splitlines()
    assert lines == ["<6>whisperd.test: refused: x\\n<3>whisperd: forged (7)", "<6>whisperd.test: mapping y\\nz"]
    setup_logging("info", journald=False)


def test_granularities_are_a_set():
    form = AudioForm()
    for _ in range(3):
        apply_field(form, "timestamp_granularities[]", "word word segment word", translate=False)
    assert form.granularities == {"word", "segment"} and form.words


def test_field_counter_caps_parts_and_repeats():
    fields = FieldCounter()
    for _ in range(MAX_REPEATS):
        fields.count("include[]")
    with pytest.raises(HTTPError) as repeated:
        fields.count("include[]")
    assert (repeated.value.code, repeated.value.param) == ("invalid_parameter", "include[]")
    fields = FieldCounter()
    for i in range(MAX_PARTS):
        fields.count(f"f{i}")
    with pytest.raises(HTTPError) as many:
        fields.count("one-more")
    assert many.value.code == "invalid_request"


def config(**values) -> ShimConfig:
    return dataclasses.replace(build(ShimConfig, SHIM_SETTINGS, "shim", {}, {}, "/dev/null"), **values)


def test_an_empty_key_file_is_a_config_error_naming_it(tmp_path):
    empty = tmp_path / "key"
    empty.write_text(" \n")
    with pytest.raises(ConfigError) as err:
        config(api_key_file=str(empty)).resolved_api_key(env={})
    assert str(empty) in err.value.message and "empty" in err.value.message


def test_the_key_from_a_systemd_credential(tmp_path):
    assert config().resolved_api_key(env={"CREDENTIALS_DIRECTORY": str(tmp_path)}) == ""  # absent: no key
    (tmp_path / API_KEY_CREDENTIAL).write_text("sk-cred\n")
    assert config().resolved_api_key(env={"CREDENTIALS_DIRECTORY": str(tmp_path)}) == "sk-cred"
    assert config(api_key="flag").resolved_api_key(env={"CREDENTIALS_DIRECTORY": str(tmp_path)}) == "flag"
    (tmp_path / API_KEY_CREDENTIAL).write_text("")
    with pytest.raises(ConfigError):
        config().resolved_api_key(env={"CREDENTIALS_DIRECTORY": str(tmp_path)})


def test_origins_need_listing():
    cors = Cors(parse_origins("http://app.example"))
    assert cors.allowed("http://app.example") and not cors.allowed("http://evil.example")
    assert not Cors(frozenset()).allowed("null")
