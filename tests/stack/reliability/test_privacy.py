"""Privacy, proved: the service runs with no network at all, keeps no audio on disk,
logs no transcript at info level, and never opens an inet socket beyond loopback.

The whole service (daemon, cold worker, shim) and its clients (Python and curl) run
in a network namespace that has only `lo` (`unshare -n`); see privacy_driver.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from testing.speech import FOX_FILES, FOX_TEXT, LONG_TEXT, word_recall
from testing.stack import ROOT, Shim
from tests.stack.reliability.probes import is_loopback, net_sockets
from tests.stack.reliability.wire import upload

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                reason="needs root and unshare for a network namespace")


@pytest.fixture(scope="module")
def report():
    cmd = ["unshare", "-n", "--", "sh", "-c",
           f"ip link set lo up && exec {sys.executable} -m tests.stack.reliability.privacy_driver"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_the_namespace_has_no_way_out(report):
    ns = report["namespace"]
    assert ns["routes"] == "" and ns["routes6"] == "", ns
    links = [l for l in ns["links"] if l.strip()]
    assert len(links) == 1 and ": lo:" in links[0], links
    assert ns["connect 1.1.1.1"].startswith("OSError") and "unreachable" in ns["connect 1.1.1.1"], ns
    assert ns["dns"] == "gaierror", ns


def test_real_speech_is_transcribed_with_no_network(report):
    answers = {what: (status, worker, body) for what, status, worker, body in report["answers"]}
    assert answers["fox.wav json"][0] == 200 and word_recall(FOX_TEXT, report["texts"][0]) >= 0.8
    assert answers["fox.wav verbose_json"][0] == 200
    assert answers["fox.wav stream"][0] == 200 and "transcript.text.done" in answers["fox.wav stream"][2]
    assert answers["long.mp3 (cold worker)"][0] == 200 and answers["long.mp3 (cold worker)"][1].startswith("cold-")
    assert word_recall(LONG_TEXT, report["texts"][2]) >= 0.8
    assert answers["curl fox.flac text"][0] == 0 and word_recall(FOX_TEXT, answers["curl fox.flac text"][2]) >= 0.8
    assert [answers[k][0] for k in ("random bytes", "truncated m4a", "10 h flac bomb", "26 MiB upload")] == \
        [400, 400, 400, 413]


def test_nothing_but_loopback_and_unix_sockets(report):
    sockets = report["sockets"]
    assert report["processes"]["children"] >= 3  # fork server, resource tracker, a cold worker
    # The daemon and its workers speak only over Unix sockets and pipes: no inet socket at all.
    assert sockets["daemon"] == [] and sockets["children"] == [], sockets
    # The shim: its listener on 127.0.0.1 and loopback connections, nothing else.
    assert sockets["shim"], sockets
    for proto, local, remote in sockets["shim"]:
        assert proto in ("tcp", "tcp6") and is_loopback(local), sockets
        assert remote.endswith(":0") or is_loopback(remote), sockets
    assert any(local.startswith("127.0.0.1:") and remote.endswith(":0") for _, local, remote in sockets["shim"])


def test_no_audio_left_on_disk(report):
    """Not under /tmp (any file written since the run began), not in the cache, not in the runtime dir."""
    assert report["files_with_uploads"] == [], report["files_with_uploads"]
    assert report["runtime_dir"] == ["daemon.log", "w.sock"]
    assert report["cache_changed"] is False


def test_no_transcript_in_the_logs_at_info(report):
    logs = report["daemon_log"] + report["shim_log"]
    assert "dropped: client went away" in report["daemon_log"]  # the logs are real and were read
    for text in report["texts"]:
        assert text.strip() and text.strip() not in logs
    for word in ("quick brown fox", "lazy dog", "grandmother", "pencils", "onions and tomatoes"):
        assert word not in logs.lower(), word


def test_session_services_hold_only_loopback_sockets(fw_stack):
    """Outside the namespace too: the session's daemon has no inet socket; the shim only 127.0.0.1."""
    assert upload(fw_stack.url, FOX_FILES["wav"].read_bytes()).status == 200
    assert net_sockets(fw_stack.daemon.proc.pid) == []
    listening = [local for _, local, remote in net_sockets(fw_stack.shim.proc.pid) if remote.endswith(":0")]
    assert listening == [f"127.0.0.1:{fw_stack.shim.port}"], listening


def test_api_key_is_never_logged(fw_stack):
    key, wrong = "sk-rel-" + os.urandom(8).hex(), "sk-wrong-" + os.urandom(8).hex()
    shim = Shim(fw_stack.daemon.socket, "--api-key", key, "--log-level", "debug")
    try:
        assert upload(shim.url, FOX_FILES["wav"].read_bytes(), timeout=60).status == 401
        r = subprocess.run(["curl", "-s", "-H", f"Authorization: Bearer {wrong}", shim.url + "/v1/models"],
                           capture_output=True, text=True)
        assert "invalid_api_key" in r.stdout
        r = subprocess.run(["curl", "-s", "-H", f"Authorization: Bearer {key}", shim.url + "/v1/models"],
                           capture_output=True, text=True)
        assert '"object": "list"' in r.stdout
        log = shim.log()
        assert key not in log and wrong not in log
        printed = subprocess.run([sys.executable, "-m", "shim", "--config", "/dev/null", "--api-key", key,
                                  "--print-config"], capture_output=True, text=True, cwd=ROOT).stdout
        assert key not in printed and "api_key = <set>" in printed
    finally:
        shim.stop()
