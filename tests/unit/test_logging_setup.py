"""whisperd.core.logs: journald priority prefixes, plain lines, live levels."""

from __future__ import annotations

import io
import logging
import re
import warnings

import pytest

from whisperd.core import logs as logging_setup
from whisperd.core.logs import parse_level, set_level, setup_logging


@pytest.fixture(autouse=True)
def restore_logging():
    # setup_logging changes process-wide state; give the next test it back.
    root = logging.getLogger()
    saved_handlers = root.handlers[:]
    saved = {name: logging.getLogger(name).level for name in ("", "whisperd", "shim")}
    yield
    if logging_setup._handler is not None:
        root.removeHandler(logging_setup._handler)
        logging_setup._handler = None
    root.handlers[:] = saved_handlers
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)
    logging.captureWarnings(False)


def journal(level: str = "info") -> io.StringIO:
    out = io.StringIO()
    setup_logging(level, journald=True, stream=out)
    return out


def test_journald_prefixes_by_priority_without_timestamp():
    out = journal()
    log = logging.getLogger("whisperd.server")
    log.info("listening on %s", "/run/whisperd/whisperd.sock")
    log.warning("slow request")
    log.error("worker died")
    log.critical("cannot load model")
    assert out.getvalue().splitlines() == [
        "<6>whisperd.server: listening on /run/whisperd/whisperd.sock",
        "<4>whisperd.server: slow request",
        "<3>whisperd.server: worker died",
        "<3>whisperd.server: cannot load model",
    ]


def test_journald_prefixes_every_traceback_line():
    out = journal()
    try:
        raise RuntimeError("decoder exploded\nsecond line of the message")
    except RuntimeError:
        logging.getLogger("whisperd.pool").exception("request %d failed", 7)
    lines = out.getvalue().splitlines()
    assert lines[0] == "<3>whisperd.pool: request 7 failed"
    assert any(line.startswith("<3>Traceback (most recent call last):") for line in lines)
    assert "<3>RuntimeError: decoder exploded" in lines
    assert lines[-1] == "<3>second line of the message"
    assert len(lines) > 4
    assert all(line.startswith("<3>") for line in lines), lines


def test_journald_prefixes_multiline_messages_and_stack_info():
    out = journal()
    logging.getLogger("shim.app").warning("first\nsecond\n\nfourth", stack_info=True)
    lines = out.getvalue().splitlines()
    assert lines[:4] == ["<4>shim.app: first", "<4>second", "<4>", "<4>fourth"]
    assert "<4>Stack (most recent call last):" in lines
    assert all(line.startswith("<4>") for line in lines)


def test_debug_hidden_at_info_and_shown_after_set_level():
    out = journal("info")
    log = logging.getLogger("whisperd.worker")
    log.debug("hidden")
    assert out.getvalue() == ""
    set_level("debug")
    log.debug("shown")
    assert out.getvalue() == "<7>whisperd.worker: shown\n"
    set_level("ERROR")
    log.warning("hidden again")
    assert out.getvalue() == "<7>whisperd.worker: shown\n"


def test_libraries_stay_at_warning_when_we_debug():
    out = journal("debug")
    logging.getLogger("aiohttp.access").info("GET /health")
    logging.getLogger("faster_whisper").warning("fp16 unsupported")
    assert out.getvalue() == "<4>faster_whisper: fp16 unsupported\n"


def test_python_warnings_reach_the_log():
    out = journal()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("old option", UserWarning)
    lines = out.getvalue().splitlines()
    assert lines and lines[0].startswith("<4>py.warnings: ")
    assert all(line.startswith("<4>") for line in lines)


def test_plain_format_has_timestamp_level_and_name():
    out = io.StringIO()
    setup_logging("info", journald=False, stream=out)
    logging.getLogger("whisperd.server").info("ready")
    line = out.getvalue()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO whisperd\.server: ready\n", line
    ), line


def test_plain_traceback_is_not_prefixed():
    out = io.StringIO()
    setup_logging("info", journald=False, stream=out)
    try:
        1 / 0
    except ZeroDivisionError:
        logging.getLogger("whisperd").exception("oops")
    text = out.getvalue()
    assert "ERROR whisperd: oops\nTraceback (most recent call last):" in text
    assert "<3>" not in text


def test_journald_detected_from_environment(monkeypatch):
    monkeypatch.setenv("JOURNAL_STREAM", "8:1")  # StringIO has no fd: trusted
    out = io.StringIO()
    setup_logging("info", stream=out)
    logging.getLogger("whisperd").info("hello")
    assert out.getvalue() == "<6>whisperd: hello\n"


def test_not_journald_without_environment(monkeypatch):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    out = io.StringIO()
    setup_logging("info", stream=out)
    logging.getLogger("whisperd").info("hello")
    assert out.getvalue().endswith(" INFO whisperd: hello\n")


def test_setup_twice_replaces_the_handler():
    first = journal()
    second = journal()
    logging.getLogger("whisperd").info("once")
    assert first.getvalue() == ""
    assert second.getvalue() == "<6>whisperd: once\n"


@pytest.mark.parametrize("name, level", [
    ("debug", logging.DEBUG), ("INFO", logging.INFO),
    (" Warning ", logging.WARNING), ("error", logging.ERROR),
])
def test_parse_level(name, level):
    assert parse_level(name) == level


@pytest.mark.parametrize("bad", ["verbose", "", "critical"])
def test_unknown_level_is_a_clear_error(bad):
    with pytest.raises(ValueError, match=r"unknown log level .*expected one of: debug, info, warning, error"):
        setup_logging(bad, stream=io.StringIO())
    with pytest.raises(ValueError, match="unknown log level"):
        set_level(bad)
