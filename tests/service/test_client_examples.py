"""The examples in `whisperd.client`'s docstring run, as written, against an in-process daemon."""

from __future__ import annotations

import asyncio
import textwrap

import whisperd.client
from tests.service.inprocess_daemon import in_process_daemon, wav_bytes

SOCKET_IN_DOCS = "/run/whisperd/whisperd.sock"


def docstring_examples() -> str:
    """The indented code at the top of the module docstring, up to its first prose paragraph."""
    lines = []
    for line in whisperd.client.__doc__.splitlines()[1:]:
        if line.strip() and not line.startswith("    "):
            if lines:
                break
            continue
        lines.append(line)
    return textwrap.dedent("\n".join(lines))


def test_the_docstring_has_both_examples():
    code = docstring_examples()
    assert "Client(" in code and "AsyncClient(" in code and code.count(SOCKET_IN_DOCS) == 2
    compile(code, "whisperd.client examples", "exec")


async def test_the_docstring_examples_run(tmp_path):
    speech = tmp_path / "speech.wav"
    speech.write_bytes(wav_bytes(1.5))
    printed: list[str] = []
    async with in_process_daemon() as d:
        code = docstring_examples().replace(SOCKET_IN_DOCS, d.socket).replace('"speech.wav"', repr(str(speech)))
        namespace = {"print": lambda *args: printed.append(" ".join(map(str, args)))}
        # In a thread: the blocking client (and the example's own asyncio.run) must not
        # block the loop the daemon runs on.
        await asyncio.to_thread(exec, compile(code, "whisperd.client examples", "exec"), namespace)
        assert d.server.served == 2
    assert printed == [
        "",  # the null engine's text
        "1.5 s of audio on the hot worker",
        "ready tiny.en ['tiny.en', 'base']",
        "[]",  # its words
    ]
