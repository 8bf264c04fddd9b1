"""Logging to stderr, shaped for whoever reads it.

Under journald every line starts with its sd-daemon priority (``<3>`` error …
``<7>`` debug) and carries no timestamp, since the journal stamps each entry
itself. Tracebacks and multi-line messages get the prefix on *every* line, so
``journalctl -p err`` keeps a whole traceback together. In a terminal the
lines read ``2026-11-28 14:00:00,123 INFO whisperd.daemon.server: message``.

Values interpolated into a message (``log.info("... %s", value)``) may come from a
client - an option name, a model name, a URL path - so their control characters
are escaped (``\n`` → ``\\n``) before formatting: a value can never start a
second, genuine-looking journal line. The message's own text and tracebacks are
left as written.

Stdlib only. ``set_level`` changes verbosity in place, for a SIGHUP reload.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import IO, Any

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

# Our own code logs at the chosen level; libraries (aiohttp, faster_whisper,
# ...) only get through from WARNING up, so `debug` is our debug, not theirs.
APP_LOGGERS = ("whisperd", "shim")

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(name)s: %(message)s"

_handler: logging.Handler | None = None

# C0 and C1 control characters and DEL; the line and paragraph separators too, which
# some readers also break lines at.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_controls(text: str) -> str:
    """``"a\nb"`` → ``"a\\nb"``: the text on one line, every control character visible."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"
                                           if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}"), text)


def _safe(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value  # numbers keep their %d / %.1f formatting
    text = value if isinstance(value, str) else str(value)
    return escape_controls(text) if _CONTROL.search(text) else value


class EscapeArgs(logging.Filter):
    """Escapes control characters in a record's arguments, whoever logs it (aiohttp's loggers too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, Mapping):
            record.args = {k: _safe(v) for k, v in record.args.items()}
        elif record.args:
            record.args = tuple(_safe(a) for a in record.args)
        return True


def parse_level(level: str) -> int:
    """``"info"`` → ``logging.INFO``; unknown names raise ValueError."""
    try:
        return LEVELS[str(level).strip().lower()]
    except KeyError:
        raise ValueError(
            f"unknown log level {level!r}; expected one of: {', '.join(LEVELS)}"
        ) from None


def priority(levelno: int) -> int:
    """The syslog priority journald files a record under (sd-daemon(3))."""
    if levelno >= logging.ERROR:
        return 3  # LOG_ERR (critical too: it is still one failed request or boot)
    if levelno >= logging.WARNING:
        return 4  # LOG_WARNING
    if levelno >= logging.INFO:
        return 6  # LOG_INFO
    return 7  # LOG_DEBUG


class JournalFormatter(logging.Formatter):
    """Prefix each line of the finished record, traceback included, with ``<N>``."""

    def __init__(self) -> None:
        super().__init__(JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        text = super().format(record)
        return "\n".join(prefix + line for line in text.split("\n"))


def setup_logging(
    level: str = "info",
    *,
    journald: bool | None = None,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Send logs to ``stream`` (default: sys.stderr at call time); idempotent.

    ``journald=None`` detects it from JOURNAL_STREAM. Returns the installed
    handler; calling again replaces it rather than doubling every line.
    """
    global _handler
    levelno = parse_level(level)  # fail before touching any logger
    if stream is None:
        stream = sys.stderr
    if journald is None:
        journald = under_journald(stream)

    handler = logging.StreamHandler(stream)
    handler.setFormatter(JournalFormatter() if journald else logging.Formatter(PLAIN_FORMAT))
    handler.addFilter(EscapeArgs())

    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
        _handler.close()
    root.addHandler(handler)
    _handler = handler
    logging.captureWarnings(True)  # warnings.warn lines get the prefix too
    # Neither format names a thread or process: do not gather them for every record
    # (the logging HOWTO's "Optimization"). Source lines stay: stack_info needs them.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    _apply(levelno)
    return handler


def set_level(level: str) -> None:
    """Change verbosity in place (SIGHUP); unknown names raise ValueError."""
    _apply(parse_level(level))


def _apply(levelno: int) -> None:
    for name in APP_LOGGERS:
        logging.getLogger(name).setLevel(levelno)
    logging.getLogger().setLevel(max(levelno, logging.WARNING))


def under_journald(stream: IO[Any] | None = None) -> bool:
    """True when stderr (or ``stream``) is connected to the journal.

    systemd sets JOURNAL_STREAM="dev:inode" of the stream it gave us; matching
    it against fstat tells apart a shell started from the service, whose stderr
    was redirected elsewhere but still inherited the variable.
    """
    value = os.environ.get("JOURNAL_STREAM")
    if not value:
        return False
    dev_text, _, ino_text = value.partition(":")
    try:
        dev, ino = int(dev_text), int(ino_text)
    except ValueError:
        return False
    try:
        fd = 2 if stream is None else stream.fileno()
        st = os.fstat(fd)
    except (OSError, ValueError, AttributeError):
        # No descriptor to compare (a wrapped or in-memory stream): trust the variable.
        return True
    return (st.st_dev, st.st_ino) == (dev, ino)
