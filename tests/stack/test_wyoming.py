"""whisperd-wyoming as Home Assistant uses it: a real daemon, the front as a real process,
and the `wyoming` package's own client.

Home Assistant's Wyoming integration opens an `AsyncTcpClient(host, port)` per utterance,
writes `Transcribe(language=...)`, `AudioStart(rate=16000, width=2, channels=1)`, the
microphone's audio as `AudioChunk`s of 1,024 samples as they are recorded, `AudioStop`,
then reads events until `Transcript`. Here the reading runs beside the writing, to see
when the streaming events arrive. JFK (11 s) and one command (1.7 s) are paced in real
time; the rest is sent as fast as the socket takes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from array import array
from dataclasses import dataclass, field

import pytest
from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info

from bench.wer import wer
from testing.speech import FOX_FILES, FOX_TEXT, JFK_FILE, JFK_TEXT, espeak_pcm, pcm_of_wav, word_recall
from testing.stack import Daemon, WyomingFront, status
from whisperd.client import Client
from whisperd.core.languages import LANGUAGES

SAMPLES_PER_CHUNK = 1024  # what Home Assistant sends
COMMAND = "turn on the kitchen lights"
ANSWER_S = 60.0  # the most any test waits for an answer; a slow machine stays well inside it
MAX_LIVE = 3


@pytest.fixture(scope="module")
def daemon():
    # A short live idle timeout, to see the daemon's own bound; a small cap, to pass it cheaply.
    d = Daemon("--max-live-sessions", str(MAX_LIVE), "--live-idle-timeout", "3")
    yield d
    d.stop()


@pytest.fixture(scope="module")
def front(daemon):
    f = WyomingFront(daemon.socket)
    yield f
    f.stop()


@pytest.fixture(scope="module")
def impatient_front(daemon):
    """The front's own bounds, small: 1 s idle, 2 s of audio per utterance."""
    f = WyomingFront(daemon.socket, "--idle-timeout", "1", "--max-utterance-seconds", "2")
    yield f
    f.stop()


@dataclass
class Run:
    """What a client saw of one utterance: every event with its time, and when audio-stop went."""

    events: list[tuple[float, Event]] = field(default_factory=list)
    audio_stop_at: float | None = None

    @property
    def types(self) -> list[str]:
        return [e.type for _, e in self.events]

    def of(self, kind: str) -> list[Event]:
        return [e for _, e in self.events if e.type == kind]

    @property
    def transcript(self) -> Transcript:
        return Transcript.from_event(self.of("transcript")[0])

    @property
    def chunks(self) -> list[str]:
        return [TranscriptChunk.from_event(e).text for e in self.of("transcript-chunk")]

    @property
    def error(self) -> Error:
        return Error.from_event(self.of("error")[0])

    def latency(self) -> float:
        """Seconds from sending audio-stop to the transcript."""
        assert self.audio_stop_at is not None
        return next(t for t, e in self.events if e.type == "transcript") - self.audio_stop_at


async def _read_all(client: AsyncTcpClient, run: Run) -> None:
    while True:
        try:
            event = await client.read_event()
        except ConnectionError:
            return  # reset after the front hung up on audio we were still sending
        if event is None:
            return
        run.events.append((time.monotonic(), event))
        if event.type in ("transcript-stop", "error"):
            return


async def utterance(front: WyomingFront, pcm: bytes, rate: int, *, channels: int = 1, language: str | None = "en",
                    name: str | None = None, pace: bool = False) -> Run:
    """One utterance on a fresh connection, as Home Assistant sends it."""
    run = Run()
    client = AsyncTcpClient(front.host, front.port)
    await client.connect()
    try:
        reading = asyncio.ensure_future(_read_all(client, run))
        try:
            try:
                await client.write_event(Transcribe(name=name, language=language).event())
                await client.write_event(AudioStart(rate=rate, width=2, channels=channels).event())
                step = SAMPLES_PER_CHUNK * 2 * channels
                for at in range(0, len(pcm), step):
                    await client.write_event(AudioChunk(rate=rate, width=2, channels=channels,
                                                        audio=pcm[at:at + step]).event())
                    if pace:
                        await asyncio.sleep(SAMPLES_PER_CHUNK / rate)
                run.audio_stop_at = time.monotonic()
                await client.write_event(AudioStop().event())
            except ConnectionError:
                pass  # the front hung up after an error event: `run` has what it said
            async with asyncio.timeout(ANSWER_S):
                await reading
        finally:
            reading.cancel()
    finally:
        with contextlib.suppress(ConnectionError):  # a send still pending when the front hung up
            await client.disconnect()
    return run


def live_sessions(daemon: Daemon) -> int:
    return status(daemon.socket).live["sessions"]


def wait_until(condition, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def assert_streaming_order(run: Run) -> None:
    """transcript-start, transcript-chunk…, transcript, transcript-stop; the chunks preview the transcript
    (they add up to the daemon's stable-consistent final; the transcript is the final decode's own text,
    which may correct a word an early partial got wrong - so: the same words but for a few)."""
    types = run.types
    assert types[0] == "transcript-start", types
    assert types[-2:] == ["transcript", "transcript-stop"], types
    assert set(types[1:-2]) <= {"transcript-chunk"}, types
    streamed = "".join(run.chunks)
    assert wer(run.transcript.text, streamed) <= 0.2, (run.chunks, run.transcript.text)


# --- speech ------------------------------------------------------------------------------


def test_describe_lists_the_daemons_models_with_their_languages(front, daemon):
    async def describe() -> Info:
        async with AsyncTcpClient(front.host, front.port) as client:
            await client.write_event(Describe().event())
            async with asyncio.timeout(ANSWER_S):
                return Info.from_event(await client.read_event())

    info = asyncio.run(describe())
    assert len(info.asr) == 1
    program = info.asr[0]
    assert program.name == "whisperd" and program.installed and program.version
    assert program.supports_transcript_streaming
    with Client(daemon.socket, timeout=30) as c:
        served = {m.id: m for m in c.models()}
    assert {m.name for m in program.models} == set(served)
    assert program.models[0].name == next(m.id for m in served.values() if m.default)
    for model in program.models:
        if served[model.name].multilingual:
            assert model.languages == list(LANGUAGES)
        else:
            assert model.languages == ["en"]
    assert "base" in served and served["base"].multilingual  # both kinds were seen


def test_real_speech_paced_in_real_time_streams_its_words(front, daemon):
    pcm, rate = pcm_of_wav(JFK_FILE)
    assert rate == 16000
    run = asyncio.run(utterance(front, pcm, rate, pace=True))
    assert_streaming_order(run)
    assert wer(JFK_TEXT, run.transcript.text) <= 0.15, run.transcript.text
    assert run.transcript.language == "en"
    assert TranscriptStart.from_event(run.of("transcript-start")[0]).language == "en"
    early = [t for t, e in run.events if e.type == "transcript-chunk" and t < run.audio_stop_at]
    assert early, f"no transcript-chunk before audio-stop: {run.types}"
    print(f"\nJFK (11 s, paced): transcript {run.latency():.3f} s after audio-stop; {len(run.chunks)} chunks, "
          f"the first {early[0] - run.events[0][0]:.2f} s after transcript-start")
    assert wait_until(lambda: live_sessions(daemon) == 0)


def test_a_command_then_another_utterance_each_on_a_fresh_connection(front):
    pcm, rate = espeak_pcm(COMMAND)  # 22,050 Hz: the daemon resamples
    first = asyncio.run(utterance(front, pcm, rate, pace=True))  # 1.7 s, as a microphone sends it
    assert_streaming_order(first)
    assert wer(COMMAND, first.transcript.text) <= 0.2, first.transcript.text
    fox, fox_rate = pcm_of_wav(FOX_FILES["wav"])
    second = asyncio.run(utterance(front, fox, fox_rate))
    assert_streaming_order(second)
    assert word_recall(FOX_TEXT, second.transcript.text) >= 0.8, second.transcript.text
    print(f"\ncommand ({len(pcm) / 2 / rate:.1f} s, paced): transcript {first.latency():.3f} s after audio-stop; "
          f"fox ({len(fox) / 2 / fox_rate:.1f} s, unpaced): {second.latency():.3f} s")


def test_two_utterances_on_one_connection(front):
    fox, rate = pcm_of_wav(FOX_FILES["wav"])

    async def twice() -> list[str]:
        texts = []
        async with AsyncTcpClient(front.host, front.port) as client:
            for _ in range(2):
                await client.write_event(Transcribe(language="en").event())
                await client.write_event(AudioStart(rate=rate, width=2, channels=1).event())
                await client.write_event(AudioChunk(rate=rate, width=2, channels=1, audio=fox).event())
                await client.write_event(AudioStop().event())
                async with asyncio.timeout(ANSWER_S):
                    while not Transcript.is_type((event := await client.read_event()).type):
                        pass
                texts.append(Transcript.from_event(event).text)
        return texts

    for text in asyncio.run(twice()):
        assert word_recall(FOX_TEXT, text) >= 0.8, text


def test_stereo_is_mixed_down_to_mono(front):
    fox, rate = pcm_of_wav(FOX_FILES["wav"])
    mono = array("h", fox)
    stereo = array("h", [0]) * (2 * len(mono))
    stereo[0::2] = mono
    stereo[1::2] = mono
    run = asyncio.run(utterance(front, stereo.tobytes(), rate, channels=2))
    assert word_recall(FOX_TEXT, run.transcript.text) >= 0.8, run.transcript.text


def test_the_model_name_and_language_are_honoured(front, daemon):
    fox, rate = pcm_of_wav(FOX_FILES["wav"])
    with Client(daemon.socket, timeout=30) as c:
        assert not {m.id: m.loaded for m in c.models()}["base"]  # nothing here asked for it yet
    run = asyncio.run(utterance(front, fox, rate, name="base", language="en"))
    assert word_recall(FOX_TEXT, run.transcript.text) >= 0.8, run.transcript.text
    with Client(daemon.socket, timeout=30) as c:
        assert {m.id: m.loaded for m in c.models()}["base"]  # a cold worker loaded it for this
    # The English-only default refuses German; the daemon says why.
    refused = asyncio.run(utterance(front, fox, rate, language="de"))
    assert refused.types == ["error"] and refused.error.code == "unsupported_for_model", refused.events
    assert "English-only" in refused.error.text


def test_an_unknown_model_is_an_error_event_that_names_the_served_ones(front):
    fox, rate = pcm_of_wav(FOX_FILES["wav"])
    run = asyncio.run(utterance(front, fox[:32000], rate, name="no-such-model"))
    assert run.types == ["error"], run.types
    assert run.error.code == "model_not_found"
    assert "no-such-model" in run.error.text and "tiny.en" in run.error.text


# --- bad input ---------------------------------------------------------------------------


def raw_exchange(front: WyomingFront, data: bytes, timeout: float = ANSWER_S) -> list[dict]:
    """Send raw bytes; the event headers the front answers with, until it closes the connection."""
    with socket.create_connection((front.host, front.port), timeout=timeout) as s:
        s.sendall(data)
        received = b""
        while chunk := s.recv(65536):
            received += chunk
    headers = []
    lines = iter(received.split(b"\n"))
    for line in lines:
        if line.strip():
            header = json.loads(line)
            if header.get("data_length"):  # wyoming writes data on the next line's bytes
                rest = b"\n".join(lines)
                header["data"] = json.loads(rest[:header["data_length"]])
                lines = iter(rest[header["data_length"]:].split(b"\n"))
            headers.append(header)
    return headers


def event_bytes(kind: str, data: dict | None = None, payload: bytes = b"") -> bytes:
    header: dict = {"type": kind, "data": data or {}}
    if payload:
        header["payload_length"] = len(payload)
    return json.dumps(header).encode() + b"\n" + payload


@pytest.mark.parametrize("data, code", [
    (b"this is not json\n", "bad_event"),
    (b'["a list"]\n', "bad_event"),
    (b'{"data": {}}\n', "bad_event"),
    (b'{"type": "audio-chunk", "payload_length": 1000000000}\n', "frame_too_large"),
    (b'{"type": "x", "data_length": -1}\n', "bad_event"),
    (event_bytes("audio-chunk", {"rate": 16000, "width": 2, "channels": 1}, b"\0" * 2048), "out_of_order"),
    (event_bytes("audio-stop"), "out_of_order"),
    (event_bytes("audio-start", {"rate": 16000, "width": 1, "channels": 1}), "unsupported_audio"),
    (event_bytes("audio-start", {"rate": 16000, "width": 4, "channels": 1}), "unsupported_audio"),
    (event_bytes("audio-start", {"rate": 16000, "channels": 1}), "bad_event"),
    (event_bytes("audio-start", {"rate": 4000, "width": 2, "channels": 1}), "invalid_parameter"),  # the daemon's
    (event_bytes("transcribe", {"language": 5}), "bad_event"),
], ids=["garbage", "not-an-object", "no-type", "huge-payload", "negative-length", "chunk-before-start",
        "stop-before-start", "8-bit", "32-bit", "no-width", "4-khz", "language-not-a-string"])
def test_bad_input_gets_one_error_event_then_the_connection_closes(front, daemon, data, code):
    headers = raw_exchange(front, data)
    assert [h["type"] for h in headers] == ["error"], headers
    assert headers[0]["data"]["code"] == code, headers
    assert front.proc.poll() is None
    assert live_sessions(daemon) == 0


def test_a_format_change_mid_stream_is_refused(front, daemon):
    start = event_bytes("audio-start", {"rate": 16000, "width": 2, "channels": 1})
    chunk = event_bytes("audio-chunk", {"rate": 22050, "width": 2, "channels": 1}, b"\0" * 2048)
    headers = raw_exchange(front, start + chunk)
    assert [h["type"] for h in headers] == ["transcript-start", "error"], headers
    assert headers[-1]["data"]["code"] == "unsupported_audio"
    assert wait_until(lambda: live_sessions(daemon) == 0)


def test_unknown_events_are_ignored_and_ping_answered(front):
    async def exchange() -> list[str]:
        async with AsyncTcpClient(front.host, front.port) as client:
            await client.write_event(Event(type="frobnicate", data={"x": 1}, payload=b"\1\2"))
            await client.write_event(Event(type="ping", data={"text": "hi"}))
            await client.write_event(Describe().event())
            async with asyncio.timeout(ANSWER_S):
                return [(await client.read_event()).type for _ in range(2)]

    assert asyncio.run(exchange()) == ["pong", "info"]


def test_a_client_that_vanishes_mid_utterance_leaves_nothing_open(front, daemon):
    fox, rate = pcm_of_wav(FOX_FILES["wav"])

    async def vanish() -> None:
        client = AsyncTcpClient(front.host, front.port)
        await client.connect()
        await client.write_event(Transcribe(language="en").event())
        await client.write_event(AudioStart(rate=rate, width=2, channels=1).event())
        await client.write_event(AudioChunk(rate=rate, width=2, channels=1, audio=fox[:len(fox) // 2]).event())
        assert wait_until(lambda: live_sessions(daemon) == 1)
        await client.disconnect()

    asyncio.run(vanish())
    assert wait_until(lambda: live_sessions(daemon) == 0), status(daemon.socket).live
    again = asyncio.run(utterance(front, fox, rate))  # and the front serves the next one
    assert word_recall(FOX_TEXT, again.transcript.text) >= 0.8


async def _silent_after_audio_start(front: WyomingFront, pcm: bytes, rate: int) -> Run:
    """audio-start and some audio, then nothing more: never an audio-stop."""
    run = Run()
    async with AsyncTcpClient(front.host, front.port) as client:
        await client.write_event(AudioStart(rate=rate, width=2, channels=1).event())
        await client.write_event(AudioChunk(rate=rate, width=2, channels=1, audio=pcm).event())
        async with asyncio.timeout(ANSWER_S):
            await _read_all(client, run)
            assert await client.read_event() is None  # then the front hangs up
    return run


def test_a_client_that_never_sends_audio_stop_meets_the_fronts_idle_timeout(impatient_front, daemon):
    fox, rate = pcm_of_wav(FOX_FILES["wav"])
    started = time.monotonic()
    run = asyncio.run(_silent_after_audio_start(impatient_front, fox[:16000], rate))
    assert run.types[0] == "transcript-start" and run.types[-1] == "error", run.types
    assert run.error.code == "idle_timeout", run.error
    assert time.monotonic() - started >= 1.0
    assert wait_until(lambda: live_sessions(daemon) == 0)


def test_a_client_that_never_sends_audio_stop_meets_the_daemons_live_idle_timeout(front, daemon):
    """The front waits 15 s by default; the daemon's live_idle_timeout (3 s here) ends it first."""
    fox, rate = pcm_of_wav(FOX_FILES["wav"])
    run = asyncio.run(_silent_after_audio_start(front, fox[:16000], rate))
    assert run.types[-1] == "error" and run.error.code == "frame_timeout", run.events
    assert "live_idle_timeout" in run.error.text
    assert wait_until(lambda: live_sessions(daemon) == 0)


def test_an_utterance_past_max_utterance_seconds_is_refused(impatient_front, daemon):
    pcm = b"\0" * (2 * 16000 * 3)  # 3 s of silence, past the 2 s allowed
    run = asyncio.run(utterance(impatient_front, pcm, 16000))
    assert run.types[-1] == "error" and run.error.code == "audio_too_long", run.types
    assert wait_until(lambda: live_sessions(daemon) == 0)


def test_past_the_daemons_session_cap_an_error_event_carries_its_message(front, daemon):
    async def crowd() -> Run:
        held = []
        try:
            for _ in range(MAX_LIVE):
                client = AsyncTcpClient(front.host, front.port)
                await client.connect()
                held.append(client)
                await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
                async with asyncio.timeout(ANSWER_S):
                    assert (await client.read_event()).type == "transcript-start"
            assert live_sessions(daemon) == MAX_LIVE
            return await utterance(front, b"\0" * 4096, 16000)
        finally:
            for client in held:
                await client.disconnect()

    run = asyncio.run(crowd())
    assert run.types == ["error"], run.types
    assert run.error.code == "overloaded" and "max_live_sessions" in run.error.text, run.error
    assert wait_until(lambda: live_sessions(daemon) == 0)


def test_with_the_daemon_down_clients_get_an_error_event_and_the_front_stays_up(tmp_path):
    down = WyomingFront(str(tmp_path / "nobody.sock"))
    try:
        describe = raw_exchange(down, event_bytes("describe"))
        assert [h["type"] for h in describe] == ["error"] and describe[0]["data"]["code"] == "not_ready", describe
        fox, rate = pcm_of_wav(FOX_FILES["wav"])
        run = asyncio.run(utterance(down, fox[:32000], rate))
        assert run.types == ["error"] and run.error.code == "not_ready", run.events
        assert "not running" in run.error.text
        assert down.proc.poll() is None
    finally:
        down.stop()


def test_zeroconf_advertises_the_server_for_home_assistant_and_withdraws_it_on_exit(tmp_path):
    from zeroconf import ServiceBrowser, ServiceListener, Zeroconf

    from whisperd_wyoming.discovery import SERVICE_TYPE, lan_address

    try:
        address = lan_address()
    except OSError as exc:
        pytest.skip(f"no route for multicast on this host: {exc}")
    seen: dict[str, list] = {"added": [], "removed": []}

    class Listener(ServiceListener):
        def add_service(self, zc, type_, name):
            info = zc.get_service_info(type_, name, timeout=3000)
            seen["added"].append((name, info.parsed_addresses() if info else None, info.port if info else None))

        def remove_service(self, zc, type_, name):
            seen["removed"].append(name)

        def update_service(self, zc, type_, name):
            pass

    name = f"whisperd-test-{tmp_path.name[-12:]}".replace("_", "-")
    browser_zc = Zeroconf()
    try:
        ServiceBrowser(browser_zc, SERVICE_TYPE, Listener())
        advertised = WyomingFront(str(tmp_path / "nobody.sock"), "--zeroconf", name, listen="0.0.0.0")
        try:
            ours = f"{name}.{SERVICE_TYPE}"
            assert wait_until(lambda: any(n == ours for n, _, _ in seen["added"]), timeout=20), seen
            assert (ours, [address], advertised.port) in seen["added"], seen
        finally:
            advertised.stop()
        assert wait_until(lambda: ours in seen["removed"], timeout=20), seen  # the goodbye on exit
    finally:
        browser_zc.close()
