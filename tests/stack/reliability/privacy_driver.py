"""Run inside a network namespace that has only loopback (see test_privacy.py).

Starts a real daemon and shim, sends real speech and every kind of error through
HTTP (Python and curl), and prints one JSON report of what it saw: the namespace's
routes, the inet sockets each process holds, the logs, the transcripts and any
file on disk that holds a copy of an upload. The test judges the report.

    unshare -n -- sh -c 'ip link set lo up && exec python -m tests.stack.reliability.privacy_driver'
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

from testing.speech import FIXTURES, FOX_FILES, LONG_FILE
from testing.stack import CACHE, Daemon, Shim, drops
from tests.stack.reliability.media import marked_mp3, marked_wav, silent_flac
from tests.stack.reliability.probes import (
    descendants,
    files_containing,
    net_sockets,
    wait_until,
)
from tests.stack.reliability.wire import audio_form, upload
from whisperd.client import Client


def namespace_facts() -> dict:
    facts = {
        "links": subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.split("\n"),
        "routes": subprocess.run(["ip", "route"], capture_output=True, text=True).stdout.strip(),
        "routes6": subprocess.run(["ip", "-6", "route"], capture_output=True, text=True).stdout.strip(),
    }
    for host in ("1.1.1.1", "8.8.8.8"):
        try:
            socket.create_connection((host, 443), timeout=3).close()
            facts[f"connect {host}"] = "connected"
        except OSError as exc:
            facts[f"connect {host}"] = f"{type(exc).__name__}: {exc.strerror or exc}"
    try:
        socket.getaddrinfo("pypi.org", 443)
        facts["dns"] = "resolved"
    except OSError as exc:
        facts["dns"] = f"{type(exc).__name__}"
    return facts


def cache_listing() -> list[tuple[str, int, int]]:
    out = []
    for dirpath, _, files in os.walk(CACHE):
        for f in files:
            p = os.path.join(dirpath, f)
            st = os.stat(p)
            out.append((p, st.st_size, st.st_mtime_ns))
    return sorted(out)


def raw_post(port: int, body: bytes, headers: dict, *, send_fraction: float = 1.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    s.sendall(f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}Content-Length: {len(body)}\r\n\r\n"
              .encode() + body[: int(len(body) * send_fraction)])
    return s


def main() -> None:
    report: dict = {"namespace": namespace_facts()}
    tokens = [os.urandom(24).hex().encode() for _ in range(4)]
    fox = marked_wav(FOX_FILES["wav"].read_bytes(), tokens[0])
    long_ = marked_mp3(LONG_FILE.read_bytes(), tokens[1])
    random_ = tokens[2] + os.urandom(2048)
    big = tokens[3] + os.urandom(26 * 1024 * 1024)
    started = time.time()
    cache_before = cache_listing()
    # One hot slot: the long file's windows go to a cold worker (its process is checked too).
    d = Daemon("--engine", "faster-whisper", "--long-audio-seconds", "10", "--max-audio-seconds", "600",
               "--hot-slots", "1")
    shim = Shim(d.socket)
    answers, texts = [], []
    try:
        def record(what: str, reply) -> None:
            answers.append((what, reply.status, reply.headers.get("X-Whisperd-Worker"),
                            reply.body[:300].decode(errors="replace")))
            if reply.status == 200 and reply.headers.get("Content-Type", "").startswith("application/json"):
                texts.append(reply.json()["text"])

        record("fox.wav json", upload(shim.url, fox, "speech.wav"))
        record("fox.wav verbose_json", upload(shim.url, fox, "speech.wav", response_format="verbose_json"))
        record("fox.wav stream", upload(shim.url, fox, "speech.wav", stream="true"))
        record("long.mp3 (cold worker)", upload(shim.url, long_, "long.mp3"))
        # curl, as a person would, from the same namespace
        curl = subprocess.run(["curl", "-s", "-F", f"file=@{FIXTURES / 'fox.flac'}", "-F", "response_format=text",
                               shim.url + "/v1/audio/transcriptions"], capture_output=True, text=True, timeout=120)
        answers.append(("curl fox.flac text", curl.returncode, None, curl.stdout[:300]))
        texts.append(curl.stdout.strip())
        # error paths
        record("random bytes", upload(shim.url, random_, "x.wav"))
        record("truncated m4a", upload(shim.url, FOX_FILES["m4a"].read_bytes()[:9000], "x.m4a"))
        record("10 h flac bomb", upload(shim.url, silent_flac(36000), "bomb.flac"))
        record("26 MiB upload", upload(shim.url, big, "big.wav"))
        headers, body = audio_form(long_, "long.mp3")
        raw_post(shim.port, body, headers, send_fraction=0.5).close()  # hangs up mid-upload
        s = raw_post(shim.port, body, headers)  # hangs up mid-inference
        wait_until(lambda: Client(d.socket, timeout=10).status().running >= 1, 30, "the long file to start")
        # While a cold worker lives: every inet socket of every process of the service.
        family = {"daemon": [d.proc.pid], "shim": [shim.proc.pid], "children": descendants(d.proc.pid)}
        report["processes"] = {k: len(v) for k, v in family.items()}
        report["sockets"] = {k: [list(x) for p in pids for x in net_sockets(p)] for k, pids in family.items()}
        s.close()
        wait_until(lambda: drops(d.socket) >= 1, 30, "the drop")
        wait_until(lambda: Client(d.socket, timeout=10).status().running == 0, 30, "idle")
        report["answers"] = answers
        report["texts"] = texts
        report["runtime_dir"] = sorted(os.listdir(d.dir))
        report["daemon_log"] = d.log()
        report["shim_log"] = shim.log()
    finally:
        shim.stop()
        d.stop()
    time.sleep(0.5)
    report["files_with_uploads"] = files_containing(
        "/tmp", tokens, started, skip=["/tmp/bash_jobs"]) + files_containing(str(CACHE), tokens, started)
    report["cache_changed"] = cache_listing() != cache_before
    print(json.dumps(report))


if __name__ == "__main__":
    sys.exit(main())
