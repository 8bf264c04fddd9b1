"""SIGTERM to a real `whisperd-shim`: out of rotation at once, still serving, then gone cleanly.

What a balancer needs from a host being stopped (docs/scale-out.md): `/health` turns 503
before the listener closes, the requests the balancer still sends during its check
interval are served, and what was in flight is answered before the process exits.
"""

from __future__ import annotations

import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

from openai import OpenAI

from testing.speech import FOX_FILES, FOX_TEXT, LONG_TEXT, long_speech_wav, word_recall
from testing.stack import Shim, status

GRACE = 8.0  # long enough that a request sent right after the 503 arrives within it on a busy machine


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_sigterm_reports_503_at_once_serves_through_the_grace_and_finishes_what_it_had(fw_stack):
    shim = Shim(fw_stack.daemon.socket, "--drain-grace", str(GRACE))
    long_audio = long_speech_wav(2)  # ~65 s of speech: still decoding when the SIGTERM comes
    try:
        with OpenAI(base_url=shim.url + "/v1", api_key="x", max_retries=0, timeout=300) as client, \
                ThreadPoolExecutor(2) as pool:
            running = pool.submit(client.audio.transcriptions.create, model="whisper-1",
                                  file=("long.wav", long_audio))
            deadline = time.monotonic() + 120
            while status(fw_stack.daemon.socket).active == 0 and not running.done():
                assert time.monotonic() < deadline, "the long request never reached the daemon"
                time.sleep(0.05)
            shim.proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            code, body = shim.get("/health")
            assert code == 503 and b'"shutting_down"' in body, body
            # What the balancer sends before it has noticed: served, with the right words.
            late = client.audio.transcriptions.create(model="whisper-1", file=FOX_FILES["wav"].open("rb"))
            assert word_recall(FOX_TEXT, late.text) >= 0.8, late.text
            assert time.monotonic() - signalled < GRACE, "the check above ran past the grace: raise GRACE"
            result = running.result(timeout=300)
        assert word_recall(LONG_TEXT, result.text) >= 0.8, result.text
        assert shim.proc.wait(120) == 0, shim.log()
        assert time.monotonic() - signalled >= GRACE  # it kept its listener for the whole grace
        assert not listening(shim.port)
    finally:
        shim.stop()
