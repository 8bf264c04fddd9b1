"""The real daemon over its real socket: framing abuse, many requests, hang-ups, clients."""

from __future__ import annotations

import json
import socket
import struct

import pytest

from testing.speech import FOX_FILES, FOX_TEXT, LONG_FILE, long_speech_wav, word_recall
from testing.stack import drops, status
from tests.stack.reliability.probes import wait_until
from whisperd.client import AsyncClient, Client
from whisperd.core import protocol
from whisperd.core.errors import AudioDecodeError


def raw_conn(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(60)
    s.connect(path)
    return s


def read_reply(s: socket.socket) -> dict | None:
    """The next reply frame, or None when the daemon closed the connection."""
    prefix = b""
    while len(prefix) < 4:
        chunk = s.recv(4 - len(prefix))
        if not chunk:
            return None
        prefix += chunk
    (n,) = struct.unpack(">I", prefix)
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        assert chunk, "closed inside a frame"
        data += chunk
    return json.loads(data)


def assert_daemon_serves(path: str) -> None:
    with Client(path, timeout=60) as c:
        assert c.status().ready


@pytest.fixture()
def sock_path(fw_stack):
    return fw_stack.daemon.socket


@pytest.mark.parametrize(
    "wire, code",
    [
        (protocol.frame(b"\x00garbage\xff"), "protocol_error"),
        (protocol.frame(b'{"v": 9, "op": "status"}'), "unsupported_version"),
        (protocol.frame(b'{"v": 1, "op": "format_disk"}'), "unknown_op"),
        (struct.pack(">I", protocol.MAX_HEADER + 1), "frame_too_large"),
        (struct.pack(">I", 0xFFFFFFFF), "frame_too_large"),
        (protocol.frame(json.dumps({"v": 1, "op": "transcribe", "audio_size": 1 << 40}).encode()), "frame_too_large"),
    ],
)
def test_bad_frames_get_an_error_frame_then_close(sock_path, wire, code):
    with raw_conn(sock_path) as s:
        s.sendall(wire)
        reply = read_reply(s)
        assert reply is not None and reply["type"] == "error"
        assert reply["error"]["code"] == code
        assert read_reply(s) is None  # then the connection is closed
    assert_daemon_serves(sock_path)


def test_audio_frame_larger_than_announced_is_refused(sock_path):
    with raw_conn(sock_path) as s:
        s.sendall(protocol.Request(op="transcribe", id="x", audio_size=10).to_frame())
        s.sendall(protocol.frame(b"y" * 100))
        reply = read_reply(s)
        assert reply["type"] == "error" and reply["error"]["code"] in ("protocol_error", "frame_too_large")
    assert_daemon_serves(sock_path)


def test_hang_up_mid_frame_leaves_the_daemon_serving(sock_path):
    for partial in (b"\x00\x00", struct.pack(">I", 100) + b'{"v": 1', protocol.Request(
            op="transcribe", id="x", audio_size=5000).to_frame() + struct.pack(">I", 5000) + b"abc"):
        with raw_conn(sock_path) as s:
            s.sendall(partial)
    assert_daemon_serves(sock_path)


def test_many_requests_on_one_connection(sock_path):
    audio = FOX_FILES["ogg"].read_bytes()
    with Client(sock_path, timeout=120) as c:
        assert c.status().model == "tiny.en"
        first = c.transcribe(audio)
        with pytest.raises(AudioDecodeError):
            c.transcribe(b"\x01\x02" * 100)  # an error frame keeps the connection
        second = c.transcribe(audio, language="en")
        assert {m.id for m in c.models()} == {"tiny.en", "base"}
    for reply in (first, second):
        assert reply.worker == "hot"
        assert word_recall(FOX_TEXT, reply.text) >= 0.8


def test_request_id_is_echoed(sock_path):
    with raw_conn(sock_path) as s:
        s.sendall(protocol.Request(op="status", id="my-id.1").to_frame())
        assert read_reply(s)["id"] == "my-id.1"


def test_progress_and_segment_frames_on_a_long_file(sock_path):
    frames: list[dict] = []
    with Client(sock_path, timeout=300) as c:
        reply = c.transcribe(LONG_FILE.read_bytes(), progress=True, segments=True, on_frame=frames.append)
    progress = [f["fraction"] for f in frames if f["type"] == "progress"]
    segments = [f for f in frames if f["type"] == "segment"]
    assert len(segments) == len(reply.transcript.segments) >= 2
    assert progress == sorted(progress) and 0 < progress[-1] <= 1.0


def test_client_that_hangs_up_mid_inference_is_dropped(fw_stack, sock_path):
    before = status(sock_path)
    with raw_conn(sock_path) as s:
        audio = long_speech_wav(4)  # ~130 s: still running when the client leaves, on any machine
        s.sendall(protocol.Request(op="transcribe", id="gone-1", audio_size=len(audio)).to_frame())
        s.sendall(protocol.frame(audio))
        wait_until(lambda: status(sock_path).running > before.running, 60, "the long request to run")
    # The dropped one is counted as dropped, never as served; the next request is answered.
    wait_until(lambda: drops(sock_path) > before.counters.get("dropped_running", 0)
             + before.counters.get("dropped_queued", 0), 30, "the drop")
    with Client(sock_path, timeout=120) as c:
        assert word_recall(FOX_TEXT, c.transcribe(FOX_FILES["wav"].read_bytes()).text) >= 0.8
    after = status(sock_path)
    # Its windows that were running are dropped (one or more), the queued ones too; none is served.
    assert after.counters["dropped_running"] >= before.counters["dropped_running"] + 1
    assert after.served == before.served + 1  # the command only
    assert after.windowed == 0 and after.decoded_audio_reserved == 0


async def test_async_client_pool(sock_path):
    import asyncio

    audio = FOX_FILES["mp3"].read_bytes()
    async with AsyncClient(sock_path, size=2) as c:
        replies = await asyncio.gather(*[c.transcribe(audio) for _ in range(3)], c.status())
    for r in replies[:3]:
        assert word_recall(FOX_TEXT, r.text) >= 0.8
    assert replies[3].ready


def test_transcript_text_is_not_logged_at_info(fw_stack, sock_path):
    with Client(sock_path, timeout=120) as c:
        text = c.transcribe(FOX_FILES["flac"].read_bytes()).text
    assert text and text not in fw_stack.daemon.log()


def test_oversized_audio_gets_its_error_even_while_the_client_is_still_sending():
    from testing.stack import Daemon
    from whisperd.core.errors import FrameTooLarge

    d = Daemon("--engine", "faster-whisper", "--max-audio-bytes", "1M", "--max-cold-workers", "0")
    try:
        with Client(d.socket, timeout=60) as c:
            with pytest.raises(FrameTooLarge, match="exceeds the daemon's limit of 1048576 bytes"):
                c.transcribe(b"x" * (5 << 20))
        assert_daemon_serves(d.socket)
    finally:
        d.stop()


def test_queued_work_of_a_client_that_hangs_up_is_dropped():
    from testing.stack import Daemon

    # One slot, no cold workers, whole files: the second request must wait behind the first.
    d = Daemon("--engine", "faster-whisper", "--max-cold-workers", "0", "--hot-slots", "1", "--window-mode", "whole")
    try:
        busy = raw_conn(d.socket)
        long_audio = long_speech_wav(4)  # ~130 s: the slot stays busy on any machine
        busy.sendall(protocol.Request(op="transcribe", id="busy-1", audio_size=len(long_audio)).to_frame())
        busy.sendall(protocol.frame(long_audio))
        wait_until(lambda: status(d.socket).running == 1, 60, "the long request to run")
        with raw_conn(d.socket) as queued:  # waits behind the long file, then hangs up
            audio = FOX_FILES["wav"].read_bytes()
            queued.sendall(protocol.Request(op="transcribe", id="queued-1", audio_size=len(audio)).to_frame())
            queued.sendall(protocol.frame(audio))
            wait_until(lambda: status(d.socket).queue == 1, 60, "the command to queue behind it")
        wait_until(lambda: status(d.socket).counters["dropped_queued"] == 1, 30, "the queued request to be dropped")
        assert read_reply(busy)["type"] == "result"  # the long one is still answered
        busy.close()
        assert_daemon_serves(d.socket)
        after = status(d.socket)
        assert after.counters["dropped_running"] == 0
        assert after.served == 1  # the long one; the dropped command never ran
    finally:
        d.stop()


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.binary(max_size=512),
    st.builds(lambda n, tail: struct.pack(">I", n) + tail, st.integers(0, 2**32 - 1), st.binary(max_size=64)),
    st.builds(lambda h: protocol.frame(json.dumps(h).encode()),
              st.dictionaries(st.sampled_from(["v", "op", "id", "audio_size", "options"]),
                              st.one_of(st.integers(-5, 2**40), st.text(max_size=10), st.none(), st.booleans()))),
))
def test_fuzzed_bytes_never_hurt_the_live_daemon(sock_path, data):
    with raw_conn(sock_path) as s:
        s.settimeout(5)
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            while s.recv(65536):  # read whatever it answers until it closes
                pass
        except OSError:
            pass
    # The daemon is still up and answering others.
    with Client(sock_path, timeout=30) as c:
        assert c.status().ready
