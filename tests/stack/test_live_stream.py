"""Live sessions on the socket, with the real model and the real daemon.

Real speech paced as a microphone sends it: partial words come before the speaker
stops, stable text never changes, and the finals say the right words; a session
is bounded (cap, idle deadline, length), and a client that breaks the protocol or
vanishes costs nothing but its own session.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest

from bench.wer import wer
from testing.live import paced, pcm16, silence, spoken
from testing.speech import JFK_FILE, JFK_TEXT
from testing.stack import Daemon, status
from whisperd.client import AsyncClient
from whisperd.client.live import LiveStream
from whisperd.core import protocol
from whisperd.core.errors import AudioTooLong, FrameTimeout, InvalidParameter, Overloaded
from whisperd.core.live import Final, Partial, SpeechStarted, SpeechStopped


@pytest.fixture(scope="module")
def daemon():
    d = Daemon("--max-live-sessions", "3", "--live-max-seconds", "60")
    yield d
    d.stop()


async def collect(live: LiveStream, into: list, stamps: list | None = None) -> None:
    async for event in live:
        into.append(event)
        if stamps is not None:
            stamps.append(time.monotonic())


def check_stable_text_only_grows(events: list) -> None:
    by_utterance: dict[int, str] = {}
    for e in events:
        if isinstance(e, Partial):
            before = by_utterance.get(e.utterance, "")
            assert e.stable_text.startswith(before), (before, e.stable_text)
            by_utterance[e.utterance] = e.stable_text
        elif isinstance(e, Final):
            assert e.text.startswith(by_utterance.get(e.utterance, "")), (by_utterance, e.text)


async def test_real_speech_paced_gives_partials_while_speaking_and_the_right_final_words(daemon):
    pcm = pcm16(JFK_FILE)
    events: list = []
    stamps: list[float] = []
    async with await LiveStream.open(daemon.socket, language="en", vad=None) as live:
        reader = asyncio.ensure_future(collect(live, events, stamps))
        last_sent = await paced(pcm, live.send_audio)
        await live.end()
        await reader
        assert live.ended is not None and live.ended.utterances == 1
    partials = [(e, t) for e, t in zip(events, stamps) if isinstance(e, Partial)]
    finals = [e for e in events if isinstance(e, Final)]
    assert len(finals) == 1
    assert sum(1 for _, t in partials if t < last_sent) >= 5  # words while the person speaks
    assert any(p.stable for p, t in partials if t < last_sent)  # and some of them already for good
    check_stable_text_only_grows(events)
    assert wer(JFK_TEXT, finals[0].text) <= 0.15, finals[0].text
    assert finals[0].language == "en"


async def test_server_vad_cuts_turns_at_pauses_and_reports_them(daemon):
    pcm = silence(0.5) + spoken("turn on the kitchen lights") + silence(1.0) + spoken("what time is it") + silence(1.0)
    events: list = []
    async with await LiveStream.open(daemon.socket, language="en") as live:
        reader = asyncio.ensure_future(collect(live, events))
        await paced(pcm, live.send_audio, speed=3.0)
        await live.end()
        await reader
    kinds = [type(e).__name__ for e in events]
    finals = [e for e in events if isinstance(e, Final)]
    assert [f.utterance for f in finals] == [0, 1], kinds
    for n, final in enumerate(finals):
        order = [k for k, e in zip(kinds, events) if getattr(e, "utterance", None) == n]
        assert order[0] == "SpeechStarted" and order.index("SpeechStopped") < order.index("Final")
    started = [e.audio_ms for e in events if isinstance(e, SpeechStarted)]
    stopped = [e.audio_ms for e in events if isinstance(e, SpeechStopped)]
    assert started[0] < stopped[0] < started[1] < stopped[1]
    assert wer("turn on the kitchen lights", finals[0].text) <= 0.2, finals[0].text
    assert wer("what time is it", finals[1].text) <= 0.25, finals[1].text
    check_stable_text_only_grows(events)


async def test_24_khz_audio_is_resampled_and_commit_ends_each_utterance(daemon):
    pcm = spoken("play some quiet music", rate=24_000)
    async with await LiveStream.open(daemon.socket, language="en", sample_rate=24_000, vad=None) as live:
        events: list = []
        reader = asyncio.ensure_future(collect(live, events))
        for _ in range(2):  # a second utterance in the same session
            await live.send_audio(pcm)
            await live.commit()
        await live.end()
        await reader
    finals = [e for e in events if isinstance(e, Final)]
    assert len(finals) == 2
    for final in finals:
        assert wer("play some quiet music", final.text) <= 0.2, final.text


async def test_past_the_cap_a_session_is_refused_clearly_and_the_connection_stays(daemon):
    opened = [await LiveStream.open(daemon.socket) for _ in range(3)]
    try:
        async with AsyncClient(daemon.socket) as c:
            with pytest.raises(Overloaded, match="max_live_sessions"):
                await c.stream()
            assert (await c.status()).live["sessions"] == 3
            assert await c.ping()
    finally:
        for live in opened:
            await live.close()
    await wait_for_no_sessions(daemon.socket)
    async with await LiveStream.open(daemon.socket) as live:  # room again
        await live.end()
        assert await live.next_event() is None and live.ended is not None


async def test_bad_settings_are_refused_by_name_and_the_connection_stays_usable(daemon):
    reader, writer = await asyncio.open_unix_connection(daemon.socket)
    try:
        bad = {"v": 2, "op": "stream", "id": "bad1", "stream": {"sample_rate": 4000}}
        writer.write(protocol.json_frame(bad))
        reply = protocol.parse_reply(await protocol.read_frame(reader, protocol.MAX_REPLY))
        assert reply["type"] == "error" and reply["error"]["code"] == "invalid_parameter"
        assert reply["error"]["param"] == "sample_rate"
    finally:
        writer.close()
    with pytest.raises(InvalidParameter):
        await LiveStream.open(daemon.socket, language="klingon")


def raw_stream(path: str) -> socket.socket:
    """A session opened by hand, for what the client library would never send."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(30)
    s.connect(path)
    s.sendall(protocol.Request(op="stream", id="raw1").to_frame())
    assert json.loads(read_frame(s))["type"] == "stream_started"
    return s


def read_frame(s: socket.socket) -> bytes:
    def exact(n: int) -> bytes:
        data = b""
        while len(data) < n:
            more = s.recv(n - len(data))
            if not more:
                raise EOFError
            data += more
        return data

    return exact(protocol.parse_length(exact(4), protocol.MAX_REPLY))


def read_error(s: socket.socket) -> dict:
    while True:
        reply = json.loads(read_frame(s))
        if reply["type"] == "error":
            return reply["error"]


@pytest.mark.parametrize("garbage, code", [
    (protocol.frame(b"\x00\x01 not json"), "protocol_error"),
    (protocol.json_frame({"type": "dance"}), "protocol_error"),
    (protocol.json_frame({"type": "audio", "size": 10 << 20}), "frame_too_large"),
    (protocol.json_frame({"type": "audio", "size": 100}) + protocol.frame(b"\0" * 50), "protocol_error"),
])
def test_garbage_inside_a_stream_gets_a_precise_error_and_the_daemon_carries_on(daemon, garbage, code):
    s = raw_stream(daemon.socket)
    try:
        s.sendall(garbage)
        assert read_error(s)["code"] == code
    finally:
        s.close()
    assert status(daemon.socket).ready


async def test_a_client_that_vanishes_mid_utterance_leaves_nothing_behind(daemon):
    before = status(daemon.socket)
    s = raw_stream(daemon.socket)
    speech = spoken("add milk to the shopping list and call my sister")
    s.sendall(protocol.json_frame({"type": "audio", "size": len(speech)}) + protocol.frame(speech))
    time.sleep(0.3)
    s.close()  # mid-utterance: no end, no commit
    await wait_for_no_sessions(daemon.socket)
    after = status(daemon.socket)
    assert after.decoded_audio_reserved == before.decoded_audio_reserved == 0
    assert after.running == 0 and after.queue == 0


async def test_a_stream_that_never_ends_is_bounded():
    d = Daemon("--live-idle-timeout", "1", "--live-max-seconds", "3")
    try:
        idle = raw_stream(d.socket)  # sends nothing at all
        err = read_error(idle)
        assert err["code"] == FrameTimeout.code and "live_idle_timeout" in err["message"]
        idle.close()
        async with await LiveStream.open(d.socket, vad=None) as live:
            with pytest.raises(AudioTooLong, match="live_max_seconds"):
                for _ in range(8):  # 4 s of audio, past the 3 s allowed
                    await live.send_audio(silence(0.5))
                    await asyncio.sleep(0.05)
                while await live.next_event() is not None:
                    pass
        await wait_for_no_sessions(d.socket)
    finally:
        d.stop()


async def wait_for_no_sessions(path: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with AsyncClient(path) as c:
        while (await c.status()).live.get("sessions"):
            assert time.monotonic() < deadline, "a live session outlived its client"
            await asyncio.sleep(0.05)


def test_v1_clients_keep_working_beside_streams(daemon):
    """A v1 header gets v1 replies (what an older client checks)."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(30)
    s.connect(daemon.socket)
    try:
        s.sendall(protocol.json_frame({"v": 1, "op": "ping", "id": "old"}))
        reply = json.loads(read_frame(s))
        assert reply["v"] == 1 and reply["result"] == {"pong": True}
    finally:
        s.close()
