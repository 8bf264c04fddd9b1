"""The README's first command for real: `make serve`, a transcription over HTTP, then Ctrl-C.

Ctrl-C at a terminal is SIGINT to the whole foreground process group; it is
emulated here by starting make in a session of its own and signalling the group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

from openai import OpenAI

from testing.speech import FOX_FILES, FOX_TEXT, LONG_FILE, LONG_TEXT, word_recall
from testing.stack import ROOT, free_port
from tests.stack.reliability.probes import cmdline, descendants, state, wait_until


def _alive(pids: list[int]) -> list[str]:
    return [f"{p}: {cmdline(p)[:120]}" for p in pids if state(p) not in ("gone", "Z")]


def test_make_serve_answers_and_ctrl_c_drains_in_flight_work(tmp_path):
    port = free_port()
    log = open(tmp_path / "serve.log", "wb")
    make = subprocess.Popen(["make", "--no-print-directory", "serve", f"PORT={port}", f"RUN={tmp_path}/run"],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=300)
        deadline = time.monotonic() + 120
        while True:
            try:
                with open(FOX_FILES["wav"], "rb") as f:
                    text = client.audio.transcriptions.create(model="whisper-1", file=f).text
                break
            except Exception:
                if time.monotonic() > deadline or make.poll() is not None:
                    raise
                time.sleep(0.5)
        assert word_recall(FOX_TEXT, text) >= 0.8, text

        in_flight: dict = {}

        def long_request() -> None:
            with open(LONG_FILE, "rb") as f:
                in_flight["text"] = client.audio.transcriptions.create(model="whisper-1", file=f).text

        t = threading.Thread(target=long_request)
        t.start()
        time.sleep(0.7)  # the upload is in; the transcription is running
        pids = descendants(make.pid)
        os.killpg(make.pid, signal.SIGINT)  # Ctrl-C
        t.join(120)
        # make itself dies of the SIGINT, as after any Ctrl-C; what matters is what it ran.
        assert make.wait(60) in (0, 2, -signal.SIGINT), (tmp_path / "serve.log").read_text()
        assert word_recall(LONG_TEXT, in_flight.get("text", "")) >= 0.8, in_flight
        output = (tmp_path / "serve.log").read_text()
        assert "stopping now" not in output and "whisperd: stopped" in output, output
        # The fork server and workers follow the daemon out.
        try:
            wait_until(lambda: not _alive(pids), 15, "every process make serve started to exit")
        except TimeoutError:
            pass
        assert _alive(pids) == [], (_alive(pids), output)
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
        log.close()
