"""`whisperctl` against one real daemon: as a real subprocess and in-process via `main()`."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from testing.speech import (
    FIXTURES,
    FOX_FILES,
    FOX_TEXT,
    LONG_FILE,
    LONG_TEXT,
    word_recall,
)
from testing.stack import ROOT, Daemon
from whisperd.client.cli import main

FOX = str(FOX_FILES["wav"])
BAR = re.compile(r"^\[[#.]{24}\] +(\d{1,3})%(  [\d.]+/[\d.]+ s)?$")


@pytest.fixture(scope="module")
def daemon():
    d = Daemon("--engine", "faster-whisper")
    yield d
    d.stop()


def ctl(*args: str, input: bytes | None = None, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    """Run whisperctl as a real process (text stdout/stderr)."""
    base = {k: v for k, v in os.environ.items() if k != "WHISPERD_SOCKET"}
    proc = subprocess.run([sys.executable, "-m", "whisperd.client.cli", *args], input=input, capture_output=True,
                          env={**base, **(env or {})}, cwd=ROOT, timeout=timeout)
    proc.stdout, proc.stderr = proc.stdout.decode(), proc.stderr.decode()
    return proc


def run(capsys, *args: str) -> tuple[int, str, str]:
    """Run `main()` in this process; (exit code, stdout, stderr)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# --- status and models ---------------------------------------------------------------


def test_status_subprocess_reads_socket_from_env(daemon):
    proc = ctl("status", env={"WHISPERD_SOCKET": daemon.socket})
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^  model +tiny\.en \(faster-whisper", proc.stdout, re.M), proc.stdout
    assert proc.stdout.startswith("whisperd ") and ": ready" in proc.stdout.splitlines()[0]
    assert daemon.socket in proc.stdout


def test_status_json(daemon, capsys):
    code, out, _ = run(capsys, "--socket", daemon.socket, "status", "--json")
    assert code == 0
    status = json.loads(out)
    assert status["model"] == "tiny.en" and status["status"] == "ready"


def test_models(daemon, capsys):
    code, out, _ = run(capsys, "--socket", daemon.socket, "models")
    names = out.splitlines()
    assert code == 0 and "tiny.en" in names
    assert all(name and " " not in name for name in names)  # bare names, for scripts
    code, out, _ = run(capsys, "--socket", daemon.socket, "models", "--json")
    models = json.loads(out)
    assert code == 0 and [m["id"] for m in models] == names
    assert next(m for m in models if m["id"] == "tiny.en")["loaded"] is True


# --- transcribe ----------------------------------------------------------------------


def test_transcribe_text_is_default(daemon, capsys):
    code, out, err = run(capsys, "--socket", daemon.socket, "transcribe", FOX)
    assert code == 0, err
    assert word_recall(FOX_TEXT, out) >= 0.8, out
    assert out.endswith("\n") and out.count("\n") == 1
    assert err == ""  # stderr is not a terminal: no progress bar unless forced


def test_transcribe_json(daemon, capsys):
    code, out, _ = run(capsys, "--socket", daemon.socket, "transcribe", FOX, "--format", "json")
    assert code == 0
    assert word_recall(FOX_TEXT, json.loads(out)["text"]) >= 0.8


def test_transcribe_srt(daemon, capsys):
    code, out, _ = run(capsys, "--socket", daemon.socket, "transcribe", FOX, "--format", "srt")
    assert code == 0
    assert out.startswith("1\n")
    assert re.search(r"^\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}$", out, re.M), out
    assert word_recall(FOX_TEXT, out) >= 0.8


def test_transcribe_vtt(daemon, capsys):
    code, out, _ = run(capsys, "--socket", daemon.socket, "transcribe", FOX, "-f", "vtt")
    assert code == 0
    assert out.startswith("WEBVTT\n\n")
    assert re.search(r"^\d\d:\d\d:\d\d\.\d{3} --> \d\d:\d\d:\d\d\.\d{3}$", out, re.M), out


def test_transcribe_verbose_json_with_words(daemon, capsys):
    code, out, _ = run(capsys, "--socket", daemon.socket, "transcribe", FOX,
                       "--format", "verbose_json", "--words", "--language", "en")
    assert code == 0
    body = json.loads(out)
    assert body["segments"] and body["language"] == "english"
    assert word_recall(FOX_TEXT, body["text"]) >= 0.8
    assert [w["word"].strip().lower() for w in body["words"]][:2] == ["the", "quick"]


def test_transcribe_output_file(daemon, capsys, tmp_path):
    target = tmp_path / "fox.srt"
    code, out, _ = run(capsys, "--socket", daemon.socket, "transcribe", FOX, "-f", "srt", "-o", str(target))
    assert (code, out) == (0, "")
    assert " --> " in target.read_text(encoding="utf-8")


def test_transcribe_stdin(daemon):
    proc = ctl("--socket", daemon.socket, "transcribe", "-", input=FOX_FILES["ogg"].read_bytes())
    assert proc.returncode == 0, proc.stderr
    assert word_recall(FOX_TEXT, proc.stdout) >= 0.8


def test_progress_bar_on_stderr_only(daemon):
    proc = ctl("--socket", daemon.socket, "transcribe", "--progress", str(LONG_FILE))
    assert proc.returncode == 0, proc.stderr
    assert word_recall(LONG_TEXT, proc.stdout) >= 0.8
    assert "%" not in proc.stdout and "[" not in proc.stdout
    lines = proc.stderr.splitlines()
    assert lines and all(BAR.match(line) for line in lines), proc.stderr
    percents = [int(BAR.match(line).group(1)) for line in lines]
    assert percents == sorted(percents) and percents[-1] == 100
    assert len(set(percents)) >= 3  # driven by the daemon's frames, not just start and end
    assert lines[-1].endswith("32.6/32.6 s"), lines[-1]


# --- failures and exit codes ---------------------------------------------------------


def test_missing_socket_exits_3(tmp_path):
    proc = ctl("--socket", str(tmp_path / "nothing.sock"), "status")
    assert proc.returncode == 3
    assert proc.stderr.startswith("whisperctl: error: no socket at ") and "(not_ready)" in proc.stderr


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to become nobody")
def test_permission_denied_exits_3_and_names_the_group(daemon):
    # The daemon's socket is 0660 and owned by root's group; `nobody` may not connect.
    proc = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           sys.executable, "-m", "whisperd.client.cli", "--socket", daemon.socket, "status"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert "permission denied" in proc.stderr and "usermod -aG" in proc.stderr


def test_missing_input_exits_4(daemon, capsys):
    code, out, err = run(capsys, "--socket", daemon.socket, "transcribe", str(FIXTURES / "missing.wav"))
    assert (code, out) == (4, "")
    assert err.startswith("whisperctl: error: cannot read ") and "No such file" in err


def test_undecodable_input_exits_1_with_code(daemon, tmp_path):
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(os.urandom(4096))
    proc = ctl("--socket", daemon.socket, "transcribe", str(junk))
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("whisperctl: error: ") and "(audio_decode_failed)" in proc.stderr


def test_daemon_refusal_exits_1(daemon, capsys):
    code, _, err = run(capsys, "--socket", daemon.socket, "transcribe", FOX, "--translate")
    assert code == 1 and "(unsupported_for_model)" in err


def test_usage_errors_exit_2(capsys):
    assert main([]) == 2
    assert main(["transcribe", FOX, "--words"]) == 2  # word timings exist in verbose_json only
    assert "--words needs --format verbose_json" in capsys.readouterr().err
    assert main(["transcribe", FOX, "--format", "docx"]) == 2
    assert "invalid choice: 'docx'" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "130" in capsys.readouterr().out  # the exit codes are in --help


def test_ctrl_c_exits_130_and_daemon_keeps_serving(daemon, capsys):
    proc = subprocess.Popen([sys.executable, "-m", "whisperd.client.cli", "--socket", daemon.socket,
                             "transcribe", "--progress", str(LONG_FILE)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                            # As at a terminal: a run started in the background (`cmd &`) inherits
                            # SIGINT ignored, and Python then never raises KeyboardInterrupt.
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stderr.readline().startswith(b"[")  # the 0% bar: it is waiting on the daemon
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert out == b"" and b"interrupted" in err
    code, out, _ = run(capsys, "--socket", daemon.socket, "status")
    assert code == 0 and ": ready" in out


def test_never_imports_an_engine(daemon):
    code = (
        "import sys; from whisperd.client.cli import main\n"
        f"rc = main(['--socket', {daemon.socket!r}, 'transcribe', {FOX!r}, '-f', 'verbose_json'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in\n"
        "               ('torch', 'whisper', 'ctranslate2', 'faster_whisper'))\n"
        "print(rc, heavy, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.stderr.strip().splitlines()[-1] == "0 []", proc.stderr


def test_status_summary_names_the_hot_workers_slots():
    from whisperd.client.cli import format_status
    from whisperd.core.replies import DaemonStatus, LaneStatus

    status = DaemonStatus(version="0.1.0", model="tiny.en", workers={"hot": 1, "cold": 0}, hot_slots=2,
                          lanes=(LaneStatus("hot", "hot", "tiny.en", "busy", 3),
                                 LaneStatus("hot-2", "hot", "tiny.en", "idle", 1)))
    text = format_status(status, "/run/whisperd/whisperd.sock")
    assert "1 hot, 0 cold (the hot one with 2 slots)" in text
    assert "hot-2" in text and "busy" in text
    assert "events" not in text  # no counter has counted anything yet


def test_status_summary_shows_the_counters_that_counted():
    from whisperd.client.cli import format_status
    from whisperd.core.replies import DaemonStatus

    text = format_status(DaemonStatus(counters={"retries": 2, "dropped_running": 0}), "/tmp/w.sock")
    assert "  events    2 retries" in text.splitlines()
