"""Bad input, at least 30 kinds, through the real stack: each gets a precise answer,
good requests beside them are still served, and nothing leaks.

The catalogue is `cases.py`; `docs/reliability.md` has the same table with the
observed answers. Kinds already covered elsewhere are referenced there, not
repeated here (socket framing and the live fuzz: tests/stack/test_socket_server.py;
413 and chunked uploads: tests/stack/test_api_service.py).
"""

from __future__ import annotations

import json
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from testing.speech import FOX_TEXT, word_recall
from testing.stack import Daemon
from tests.stack.reliability.cases import BOUNDED_CASES, FOX, HTTP_CASES, RANDOM, Case
from tests.stack.reliability.conftest import BOUNDED_MAX_SECONDS
from tests.stack.reliability.media import silent_flac, tone, wav
from tests.stack.reliability.probes import files_containing, hwm_mb, rss_mb
from tests.stack.reliability.wire import (
    Reply,
    assert_openai_error,
    audio_form,
    post,
    upload,
)
from whisperd.client import Client
from whisperd.core import protocol
from whisperd.core.errors import AudioTooLong

# Bytes that only our uploads contain: found in a file, they would be a leaked upload.
MARKERS = [RANDOM[:48], FOX["wav"][20000:20048], FOX["mp3"][5000:5048]]


def check(case: Case, reply: Reply) -> None:
    if case.code is None:
        assert reply.status == 200, (case.id, reply.status, reply.body[:300])
        text = reply.json()["text"]
        assert isinstance(text, str)
        if case.speech:
            assert word_recall(FOX_TEXT, text) >= 0.8, text
        return
    where = f"{case.id}: known bug: {case.bug}" if case.bug else case.id
    try:
        assert_openai_error(reply, case.status, case.code, case.param)
    except AssertionError as exc:
        raise AssertionError(f"{where}\n{exc}") from None


def send(url: str, case: Case) -> Reply:
    headers, body = case.build()
    return post(url, body, headers)


@pytest.fixture(scope="module")
def before(fw_watched):
    """The session daemon's accounting before this module's batch, and the time it began."""
    return fw_watched.settle(), time.time()


@pytest.mark.parametrize("case", HTTP_CASES, ids=[c.id for c in HTTP_CASES])
def test_bad_input_over_http(fw_stack, before, case):
    check(case, send(fw_stack.url, case))


@pytest.mark.parametrize("case", BOUNDED_CASES, ids=[c.id for c in BOUNDED_CASES])
def test_bombs_cost_little_time_and_memory(bounded_stack, case):
    """A small file that decodes to hours: refused within the limit, in time and memory."""
    pid = bounded_stack.daemon.proc.pid
    headers, body = case.build()
    assert len(body) < 200_000
    started = time.monotonic()
    reply = post(bounded_stack.url, body, headers)
    took = time.monotonic() - started
    check(case, reply)
    assert took < 10, took
    # 600 s of 16 kHz float32 is 38 MB; decoding may hold it twice.
    assert hwm_mb(pid) < bounded_stack.baseline_hwm + 150, (hwm_mb(pid), bounded_stack.baseline_hwm)


def test_ten_hours_of_opus_silence_stop_at_the_limit(bounded_stack):
    """The issue's own bomb: 10 h of silence, low-bitrate Opus (~9 MB), bounded by max_audio_seconds."""
    from tests.unit.test_audio import silent_opus

    data = silent_opus(36000)
    assert len(data) < 10 << 20
    started = time.monotonic()
    reply = upload(bounded_stack.url, data, "bomb.ogg")
    assert_openai_error(reply, 400, "audio_too_long", "file")
    assert str(BOUNDED_MAX_SECONDS) in reply.error["message"]
    assert time.monotonic() - started < 20


def test_refused_bombs_do_not_pile_up_memory():
    """Each refusal must give back what it decoded; here 2 h of silence in 33 KB, limit 1 h.

    Known bug (reported): the daemon keeps the refused decode's ~230 MB (4 h limit:
    ~0.9 GB) - the last one stays referenced and glibc keeps each decode thread's
    arena - so RSS climbs bomb after bomb (159 -> 384 -> 606 -> 827 MB here; with
    the default limit, 4.5 GB after eight 130 KB uploads) and stays there.
    """
    d = Daemon("--engine", "faster-whisper", "--max-cold-workers", "0", "--max-audio-seconds", "3600")
    try:
        bomb = silent_flac(7200)
        seen = []
        with Client(d.socket, timeout=60) as c:
            for _ in range(4):
                with pytest.raises(AudioTooLong):
                    c.transcribe(bomb)
                seen.append(rss_mb(d.proc.pid))
        assert seen[-1] <= seen[0] + 50, f"known bug: daemon RSS after each refused bomb: {[round(x) for x in seen]} MB"
    finally:
        d.stop()


def test_all_at_once_while_good_requests_carry_on(fw_stack, before):
    """Every refusal at the same time as three real transcriptions: each gets its own answer."""
    errors = [c for c in HTTP_CASES if c.code is not None and not c.bug]
    good = [FOX["wav"], FOX["mp3"], FOX["ogg"]]
    with ThreadPoolExecutor(16) as pool:
        good_futures = [pool.submit(upload, fw_stack.url, g, "good") for g in good]
        bad_futures = [(c, pool.submit(send, fw_stack.url, c)) for c in errors]
        for c, f in bad_futures:
            check(c, f.result())
        for f in good_futures:
            r = f.result()
            assert r.status == 200, r.body[:300]
            assert word_recall(FOX_TEXT, r.json()["text"]) >= 0.8


# --- the socket --------------------------------------------------------------------------


def _exchange(path: str, data: bytes) -> list[dict]:
    """Send raw bytes, read reply frames until the daemon closes or stops talking."""
    replies = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(60)
        s.connect(path)
        s.sendall(data)
        buf = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            buf += chunk
            while len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">I", buf[:4])[0]:
                n = struct.unpack(">I", buf[:4])[0]
                replies.append(json.loads(buf[4:4 + n]))
                buf = buf[4 + n:]
            if replies and replies[-1]["type"] in ("result", "error"):
                s.settimeout(1.0)  # the next read tells whether the connection stays open
    return replies


def _header(**fields) -> bytes:
    return protocol.frame(json.dumps({"v": 1, "op": "transcribe", "id": "bad-1", **fields}).encode())


SOCKET_CASES = [
    # id, bytes, code, param
    ("options-temperature-string", _header(audio_size=4, options={"temperature": "hot"}), "protocol_error", None),
    ("options-unknown-key", _header(audio_size=4, options={"rm": "-rf"}), "protocol_error", None),
    ("options-beam-1000", _header(audio_size=4, options={"beam_size": 1000}), "invalid_parameter", "beam_size"),
    ("options-language-long", _header(audio_size=4, options={"language": "x" * 100}), "invalid_parameter", "language"),
    ("options-not-object", _header(audio_size=4, options=[1, 2]), "protocol_error", None),
    ("audio-size-negative", _header(audio_size=-1), "protocol_error", None),
    ("audio-size-bool", _header(audio_size=True), "protocol_error", None),
    ("id-path-like", protocol.frame(b'{"v": 1, "op": "status", "id": "../../etc"}'), "protocol_error", None),
    ("header-not-utf8", protocol.frame(b'{"v": 1, "op": "\xff"}'), "protocol_error", None),
    ("model-300-chars", _header(audio_size=4, model="m" * 300), "invalid_parameter", "model"),
]


@pytest.mark.parametrize("data, code, param", [c[1:] for c in SOCKET_CASES], ids=[c[0] for c in SOCKET_CASES])
def test_bad_headers_on_the_socket_get_an_error_frame(fw_stack, data, code, param):
    replies = _exchange(fw_stack.daemon.socket, data)
    assert len(replies) == 1 and replies[0]["type"] == "error", replies
    assert replies[0]["error"]["code"] == code, replies
    if param:
        assert replies[0]["error"]["param"] == param, replies


@pytest.mark.parametrize("audio, code", [
    (b"", "audio_empty"),
    (RANDOM, "audio_decode_failed"),
    (wav(tone(1), channels=255), "audio_decode_failed"),
], ids=["empty", "random", "wav-255-channels"])
def test_bad_audio_on_the_socket_keeps_the_connection(fw_stack, audio, code):
    """An audio error is an error frame; the stream stays in step and serves the next request."""
    good = FOX["wav"]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(60)
        s.connect(fw_stack.daemon.socket)
        s.sendall(protocol.Request(op="transcribe", id="bad-audio", audio_size=len(audio)).to_frame()
                  + protocol.frame(audio))
        first = _read_frame(s)
        # The next request only after the answer: sending early reads as a hang-up (protocol.md).
        s.sendall(protocol.Request(op="transcribe", id="good-after", audio_size=len(good)).to_frame()
                  + protocol.frame(good))
        second = _read_frame(s)
    assert (first["id"], first["type"], first["error"]["code"]) == ("bad-audio", "error", code), first
    assert (second["id"], second["type"]) == ("good-after", "result"), second
    assert word_recall(FOX_TEXT, second["result"]["text"]) >= 0.8


def _read_frame(s: socket.socket) -> dict:
    def exactly(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            assert chunk, "the daemon closed the connection"
            buf += chunk
        return buf

    return json.loads(exactly(struct.unpack(">I", exactly(4))[0]))


def test_bomb_on_the_socket_is_bounded(bounded_stack):
    audio = silent_flac(36000)
    replies = _exchange(bounded_stack.daemon.socket, protocol.Request(
        op="transcribe", id="bomb", audio_size=len(audio)).to_frame() + protocol.frame(audio))
    assert replies[0]["type"] == "error" and replies[0]["error"]["code"] == "audio_too_long", replies


# --- slow clients --------------------------------------------------------------------------


def test_slowloris_upload_is_cut_off(fw_stack):
    """A client that sends its body at 2 bytes/s must not hold a request open for ever.

    Known bug (reported): the shim has no body read timeout - aiohttp bounds only the
    wait for the request headers (keepalive_timeout, 75 s) and the shim's reads of the
    multipart body wait as long as bytes trickle in. This test asks for a setting
    `upload_timeout` (env WHISPERD_UPLOAD_TIMEOUT; formerly read_timeout) bounding the
    whole body, answered with 408 `upload_timeout` in OpenAI's shape.
    """
    from testing.stack import Shim

    shim = Shim(fw_stack.daemon.socket, env={"WHISPERD_UPLOAD_TIMEOUT": "3"})
    try:
        headers, body = audio_form(FOX["wav"][:2000], "slow.wav")
        head = (f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: {headers['Content-Type']}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        s = socket.create_connection(("127.0.0.1", shim.port), timeout=30)
        s.sendall(head)
        started, answer = time.monotonic(), b""
        for byte in body:
            try:
                s.sendall(bytes([byte]))
            except OSError:
                break  # closed by the server: bounded
            s.setblocking(False)
            try:
                answer = s.recv(65536)
                break
            except BlockingIOError:
                pass
            finally:
                s.setblocking(True)
            if time.monotonic() - started > 12:
                break
            time.sleep(0.5)
        took = time.monotonic() - started
        s.close()
        assert took < 10, f"known bug: a body trickling at 2 bytes/s held the request open for {took:.0f} s"
        if answer:
            status = int(answer.split(b" ", 2)[1])
            body_json = json.loads(answer.split(b"\r\n\r\n", 1)[1])
            assert status == 408 and body_json["error"]["code"] == "upload_timeout", answer[:300]
    finally:
        shim.stop()


@pytest.mark.parametrize("request_bytes", [
    b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
    b"GET /v1/models?" + b"a" * 20000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(300)) + b"\r\n",
], ids=["header-20kb", "url-20kb", "300-headers"])
def test_request_line_and_header_limits(fw_stack, request_bytes):
    """aiohttp's parser limits (8190-byte lines and fields, a header count) answer 400 at once.

    The body is aiohttp's own text/plain, not OpenAI's shape: the request never
    reaches the application (reported; docs/reliability.md).
    """
    with socket.create_connection(("127.0.0.1", fw_stack.shim.port), timeout=10) as s:
        s.sendall(request_bytes)
        answer = s.recv(65536)
    assert answer.split(b" ", 2)[1] == b"400", answer[:200]
    assert fw_stack.shim.get("/health")[0] == 200


# --- and nothing leaked ----------------------------------------------------------------------


def test_nothing_leaked_after_the_batch(fw_watched, before):
    """After everything above: the same descriptors, processes and files as before."""
    snap, started = before
    after = fw_watched.assert_no_leak(snap)
    hits = files_containing("/tmp", MARKERS, started, skip=["/tmp/pytest-of-", "/tmp/bash_jobs"])
    assert hits == [], f"uploaded bytes found on disk: {hits}"
    print(f"\nfds daemon+shim before/after: {sum(snap.fds.values())}/{sum(after.fds.values())}, "
          f"processes {snap.processes}, cold workers {snap.workers}/{after.workers}")


def test_bounded_daemon_leaked_nothing(bounded_stack):
    bounded_stack.assert_no_leak(bounded_stack.baseline)
