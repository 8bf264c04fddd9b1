"""`whisperctl listen` as a person runs it: a file, stdin, a terminal, a microphone (a fake
`arecord` on PATH that 'records' real speech), Ctrl-C, and a machine with no recorder."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time

import pytest

from bench.wer import wer
from testing.live import silence, spoken
from testing.speech import JFK_FILE, JFK_TEXT
from testing.stack import ROOT, Daemon

WHISPERCTL = [sys.executable, "-m", "whisperd.client.cli"]


@pytest.fixture(scope="module")
def daemon():
    d = Daemon()
    yield d
    d.stop()


def listen(daemon, *args: str, **run) -> subprocess.CompletedProcess:
    return subprocess.run([*WHISPERCTL, "--socket", daemon.socket, "listen", *args], capture_output=True,
                          cwd=ROOT, timeout=120, **run)


def events(stdout: bytes) -> list[dict]:
    return [json.loads(line) for line in stdout.decode().splitlines()]


def test_a_wav_file_gives_its_words_utterance_by_utterance(daemon):
    r = listen(daemon, str(JFK_FILE), "--json", "--language", "en")
    assert r.returncode == 0, r.stderr.decode()
    got = events(r.stdout)
    finals = [e["text"] for e in got if e["type"] == "final"]
    assert len(finals) >= 2  # JFK pauses: server VAD ends a turn at each
    assert wer(JFK_TEXT, " ".join(finals)) <= 0.2, finals
    assert {"speech_started", "speech_stopped"} <= {e["type"] for e in got}


def test_paced_raw_pcm_on_stdin_shows_partials_before_its_final(daemon):
    pcm = spoken("turn on the kitchen lights and then play some quiet music", rate=8000) + silence(0.5, 8000)
    started = time.monotonic()
    r = listen(daemon, "-", "--rate", "8000", "--pace", "--no-vad", "--json", "-l", "en", input=pcm)
    took = time.monotonic() - started
    assert r.returncode == 0, r.stderr.decode()
    got = events(r.stdout)
    kinds = [e["type"] for e in got]
    assert "partial" in kinds and kinds.index("partial") < kinds.index("final")
    assert took >= len(pcm) / 2 / 8000 * 0.9  # paced: no faster than it was said
    final = [e for e in got if e["type"] == "final"][0]["text"]
    assert wer("turn on the kitchen lights and then play some quiet music", final) <= 0.25, final


def test_on_a_terminal_the_partial_line_rewrites_itself_and_finals_stay(daemon):
    pcm = spoken("what is the weather tomorrow") + silence(0.3)
    main, child = pty.openpty()
    proc = subprocess.Popen([*WHISPERCTL, "--socket", daemon.socket, "listen", "-", "--pace", "--no-vad", "-l", "en"],
                            stdin=subprocess.PIPE, stdout=child, stderr=subprocess.PIPE, cwd=ROOT)
    os.close(child)
    proc.stdin.write(pcm)
    proc.stdin.close()
    out = b""
    while True:
        try:
            data = os.read(main, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        out += data
    assert proc.wait(60) == 0, proc.stderr.read().decode()
    text = out.decode()
    assert "\r\x1b[K" in text  # the line rewritten in place
    last_line = text.replace("\r\n", "\n").split("\r\x1b[K")[-1]
    assert wer("what is the weather tomorrow", last_line.strip()) <= 0.25, repr(text)


def fake_recorder(tmp_path, name: str, pcm: bytes):
    """`name` on PATH: writes `pcm` like a microphone, then keeps 'recording' silence."""
    (tmp_path / "speech.raw").write_bytes(pcm)
    script = tmp_path / name
    script.write_text(f"#!/bin/sh\ncat {tmp_path / 'speech.raw'}\nexec cat /dev/zero\n")
    script.chmod(0o755)
    return {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}


def test_the_microphone_until_ctrl_c_prints_what_was_said(daemon, tmp_path):
    env = fake_recorder(tmp_path, "arecord", spoken("call my sister now") + silence(1.0))
    proc = subprocess.Popen([*WHISPERCTL, "--socket", daemon.socket, "listen", "--source", "arecord", "--json",
                             "-l", "en"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    try:
        line = proc.stdout.readline()
        while line and json.loads(line)["type"] != "final":
            line = proc.stdout.readline()
        assert line, proc.stderr.read().decode()
        assert wer("call my sister now", json.loads(line)["text"]) <= 0.25
    finally:
        proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()


def test_no_recorder_is_a_clear_error(daemon, tmp_path):
    r = listen(daemon, env={**os.environ, "PATH": str(tmp_path)})
    assert r.returncode == 3
    assert b"install pulseaudio-utils (parec) or alsa-utils (arecord)" in r.stderr
