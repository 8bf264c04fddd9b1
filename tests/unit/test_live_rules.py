"""Live speech, the pure parts: the stream's frames, LocalAgreement-2, turns, the PCM converter,
and a session driven by a fake decoder (no model: the words it 'hears' are scripted)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from whisperd.core import live, protocol
from whisperd.core.agreement import Agreement, tail_after
from whisperd.core.errors import FrameTooLarge, InvalidParameter, ProtocolError, UnsupportedVersion
from whisperd.core.transcript import Transcript
from whisperd.daemon.live import LiveSession
from whisperd.daemon.live_audio import PcmConverter
from whisperd.daemon.turns import FRAME, TurnDetector


def stream_header(**fields) -> bytes:
    base = {"v": 2, "op": "stream", "id": "s1"}
    base.update(fields)
    return json.dumps(base).encode()


# --- the protocol ------------------------------------------------------------------------


def test_a_stream_request_round_trips_as_version_2():
    settings = live.StreamSettings(24_000, "s16le", None, partials=False)
    req = protocol.Request(op="stream", id="s1", model="base",
                           options=protocol.TranscribeOptions(language="de"), stream=settings)
    payload = req.to_frame()[4:]
    assert json.loads(payload)["v"] == 2
    back = protocol.parse_request(payload)
    assert back.stream == settings and back.options.language == "de" and back.model == "base"


def test_v1_requests_still_go_out_as_v1_and_v1_replies_are_read():
    assert json.loads(protocol.Request(op="status", id="a").to_frame()[4:])["v"] == 1
    assert protocol.parse_reply(protocol.result_frame("a", {})[4:])["v"] == 1


def test_stream_needs_version_2():
    with pytest.raises(UnsupportedVersion, match="needs protocol version 2"):
        protocol.parse_request(stream_header(v=1))


@pytest.mark.parametrize("stream, error, param", [
    ({"sample_rate": 4000}, InvalidParameter, "sample_rate"),
    ({"sample_rate": 16000.5}, InvalidParameter, "sample_rate"),
    ({"sample_rate": True}, InvalidParameter, "sample_rate"),
    ({"encoding": "f32le"}, InvalidParameter, "encoding"),
    ({"vad": {"threshold": 2}}, InvalidParameter, None),
    ({"partials": "yes"}, ProtocolError, None),
    ({"rate": 16000}, ProtocolError, None),
    ("16000", ProtocolError, None),
])
def test_bad_stream_settings_are_refused_by_name(stream, error, param):
    with pytest.raises(error) as caught:
        protocol.parse_request(stream_header(stream=stream))
    if param:
        assert caught.value.param == param


def test_client_frames_are_checked_before_the_audio_is_read():
    assert protocol.parse_client_frame(b'{"type": "audio", "size": 2048}') == live.ClientFrame("audio", 2048)
    assert protocol.parse_client_frame(b'{"type": "end"}').type == "end"
    for bad in (b"garbage", b"[]", b'{"type": "dance"}', b'{"type": "audio", "size": -1}',
                b'{"type": "audio", "size": true}', b'{"type": "audio"}'):
        with pytest.raises(ProtocolError):
            protocol.parse_client_frame(bad)
    with pytest.raises(FrameTooLarge):
        protocol.parse_client_frame(json.dumps({"type": "audio", "size": live.MAX_CHUNK + 1}).encode())


def test_events_parse_to_their_types():
    frame = json.loads(protocol.stream_frame("s1", "partial", utterance=0, text="ask not", stable=3)[4:])
    assert frame["v"] == 2
    event = live.parse_event(protocol.parse_reply(json.dumps(frame).encode()))
    assert event == live.Partial(0, "ask not", 3) and event.stable_text == "ask"
    with pytest.raises(ProtocolError):
        live.parse_event({"type": "partial", "utterance": 0})


# --- LocalAgreement-2 --------------------------------------------------------------------


def test_two_agreeing_hypotheses_make_words_stable_and_they_never_change():
    a = Agreement()
    assert not a.update("And so")
    assert a.stable_text() == "" and a.text() == "And so"
    assert a.update("And so my fellow")  # "And so" agreed twice
    assert a.stable_text() == "And so"
    a.update("and so, my fellow Americans")  # a later decode hears a comma: the stable words stay
    assert a.stable_text().startswith("And so")
    assert a.final("And so my fellow Americans, ask not").startswith(a.stable_text())


def test_the_final_joins_after_the_stable_words_where_they_line_up():
    a = Agreement()
    a.update("ask not what your")
    a.update("ask not what your country")
    assert a.stable_text() == "ask not what your"
    assert a.final("Ask, not what your country can do") == "ask not what your country can do"
    assert tail_after(["ask", "not"], ["ask", "not"]) == []


# --- turns -------------------------------------------------------------------------------


def test_a_turn_needs_a_run_of_speech_and_ends_after_the_silence():
    t = TurnDetector(0.5, silence_frames=4)
    events = t.feed([0.9, 0.2] * 3 + [0.9] * 5 + [0.4] * 3 + [0.9] + [0.1] * 4)
    # 0.4 is above the hysteresis floor (0.35): not yet quiet; the turn ends after 4 quiet frames.
    assert events == [("start", 6), ("stop", 15)]


# --- audio -------------------------------------------------------------------------------


def test_pcm_at_24_khz_is_resampled_not_decimated():
    rate = 24_000
    t = np.arange(rate) / rate
    tone = (np.sin(2 * np.pi * 440 * t) * 16000).astype("<i2").tobytes()
    conv = PcmConverter("s16le", rate)
    out = np.concatenate([conv.feed(tone[i:i + 999]) for i in range(0, len(tone), 999)] + [conv.flush()])
    assert abs(len(out) - 16_000) <= 32
    spectrum = np.abs(np.fft.rfft(out[:16_000]))
    assert abs(int(np.argmax(spectrum)) - 440) <= 1  # the pitch survives: a real filter
    assert 0.4 < float(np.max(np.abs(out[1000:2000]))) < 0.55


def test_odd_chunks_keep_their_carry_byte():
    conv = PcmConverter("s16le", 16_000)
    data = np.array([1000, -1000, 2000], "<i2").tobytes()
    out = np.concatenate([conv.feed(data[:3]), conv.feed(data[3:])])
    assert np.allclose(out * 32768, [1000, -1000, 2000])


def test_g711_expands_to_the_standard_values():
    assert PcmConverter("mulaw", 16_000).feed(bytes([0xFF, 0x00]))[0] == 0
    assert round(float(PcmConverter("mulaw", 16_000).feed(bytes([0x00]))[0]) * 32768) == -32124
    assert round(float(PcmConverter("alaw", 16_000).feed(bytes([0xD5]))[0]) * 32768) == 8


# --- a session with a fake decoder ---------------------------------------------------------


class LoudIsSpeech:
    """A frame is speech when it is loud: the test's audio is tone (speech) or zeros."""

    def probabilities(self, pcm: np.ndarray) -> np.ndarray:
        frames = pcm[: len(pcm) // FRAME * FRAME].reshape(-1, FRAME)
        return (np.abs(frames).max(axis=1) > 0.1).astype(np.float32)


def tone(seconds: float) -> bytes:
    n = int(seconds * 16_000)
    return (np.sin(np.arange(n) / 3) * 12000).astype("<i2").tobytes()


def quiet(seconds: float) -> bytes:
    return bytes(int(seconds * 16_000) * 2)


class Script:
    """Hears `words`, one per half second of the audio it is given."""

    def __init__(self, words: str) -> None:
        self.words = words.split()
        self.calls: list[tuple[float, bool]] = []

    async def __call__(self, pcm: np.ndarray, final: bool, prompt: str | None) -> Transcript:
        self.calls.append((len(pcm) / 16_000, final))
        await asyncio.sleep(0)
        n = int(len(pcm) / 16_000 / 0.5)
        return Transcript(text=" ".join(self.words[:n]), language="en", duration=len(pcm) / 16_000)


async def drive(session: LiveSession, chunks: list[bytes], step: int = 2048) -> None:
    for data in chunks:
        for i in range(0, len(data), step):
            await session.audio_chunk(data[i:i + step])
            await asyncio.sleep(0)  # lets a partial's decode finish, as real time would


async def test_server_vad_gives_started_partials_stopped_and_a_final_that_keeps_the_stable_words():
    events: list[tuple[str, dict]] = []
    decoder = Script("one two three four five six seven eight")
    session = LiveSession(live.StreamSettings(), decoder, lambda kind, **f: events.append((kind, f)), LoudIsSpeech())
    await drive(session, [quiet(1.0), tone(3.0), quiet(1.0)])
    await session.end()
    kinds = [k for k, _ in events]
    assert kinds[0] == "speech_started" and "speech_stopped" in kinds and kinds[-1] == "final"
    assert kinds.index("speech_stopped") < kinds.index("final")
    partials = [f for k, f in events if k == "partial"]
    assert len(partials) >= 3
    stables = [p["text"][: p["stable"]] for p in partials]
    for earlier, later in zip(stables, stables[1:]):
        assert later.startswith(earlier)  # stable text only grows
    final = events[-1][1]
    assert final["text"].startswith(stables[-1]) and final["text"].split()[:2] == ["one", "two"]
    assert 0.6 <= final["start"] <= 1.0 and 3.9 <= final["end"] <= 4.4  # the pre-roll, the end padding
    assert any(final_ for _, final_ in decoder.calls) and not decoder.calls[0][1]


async def test_client_commits_without_vad_and_a_commit_on_nothing_is_an_empty_final():
    events: list[tuple[str, dict]] = []
    session = LiveSession(live.StreamSettings(vad=None), Script("a b c d e f"),
                          lambda kind, **f: events.append((kind, f)), LoudIsSpeech())
    await session.commit()
    assert events == [("final", {**events[0][1], "text": ""})]
    await drive(session, [tone(1.0), quiet(2.0), tone(1.0)])
    assert not any(k.startswith("speech_") for k, _ in events)  # no VAD, no turn events
    await session.commit()
    finals = [f for k, f in events if k == "final"]
    assert len(finals) == 2 and finals[1]["text"] and finals[1]["end"] == pytest.approx(4.0, abs=0.01)


async def test_silence_only_is_never_decoded():
    decoder = Script("ghost words")
    events: list = []
    session = LiveSession(live.StreamSettings(vad=None), decoder, lambda kind, **f: events.append(kind), LoudIsSpeech())
    await drive(session, [quiet(5.0)])
    await session.commit()
    assert decoder.calls == [] and events == ["final"]


async def test_a_long_utterance_is_cut_into_pieces_and_its_memory_stays_bounded():
    decoder = Script(" ".join(f"w{i}" for i in range(400)))
    events: list[tuple[str, dict]] = []
    session = LiveSession(live.StreamSettings(vad=None), decoder, lambda kind, **f: events.append((kind, f)),
                          LoudIsSpeech(), max_piece_s=8.0)
    speech = b"".join(tone(2.0) + quiet(0.3) for _ in range(10))  # 23 s, pauses too short to end a turn
    await drive(session, [speech], step=16_000)
    assert len(session.audio) <= 8.0 * 16_000 + 16_000  # never more than a piece (and one chunk)
    await session.commit()
    final = [f for k, f in events if k == "final"][-1]
    assert len(final["text"].split()) >= 30  # every piece's words, in one final
    assert sum(1 for _, f in decoder.calls if f) >= 3  # the pieces, then the rest


# --- the policy ----------------------------------------------------------------------------


def test_live_finals_go_first_then_partials_then_commands_and_windows():
    from whisperd.daemon import policy

    jobs = (
        policy.JobFacts("window", 30.0, "m", waited_s=50.0, request_s=600.0, window=True),
        policy.JobFacts("command", 2.0, "m", waited_s=5.0),
        policy.JobFacts("partial", 3.0, "m", live=policy.LIVE_PARTIAL),
        policy.JobFacts("final", 3.0, "m", live=policy.LIVE_FINAL),
    )
    hot = (policy.WorkerFacts("hot-0", "hot", "m", "idle"),)
    facts = policy.Facts(jobs, hot, cpu_cores=2, free_memory_mb=0, worker_memory_mb={})
    assert [j.id for j in policy.job_order(jobs, 0.5)][:3] == ["final", "partial", "command"]
    assert policy.decide(facts, policy.Settings()).assign == (("final", "hot-0"),)
