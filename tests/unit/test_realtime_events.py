"""The Realtime front's pure rules: session settings (GA and beta), client events, deltas, handshake."""

from __future__ import annotations

import base64
import json

import pytest

from shim import realtime_events as rt
from whisperd.core.chunking import Chunking

DEFAULT = rt.TranscriptionSettings()


def ga(input_: dict, **session) -> rt.TranscriptionSettings:
    return rt.parse_ga_session({"type": "transcription", "audio": {"input": input_}, **session}, DEFAULT)


def test_defaults_are_openais_pcm_at_24k_with_server_vad():
    assert (DEFAULT.encoding, DEFAULT.sample_rate) == ("s16le", 24_000)
    assert DEFAULT.vad == Chunking(0.5, 300, 500, explicit=True)


def test_ga_session_update_maps_to_the_daemon_stream():
    s = ga({"format": {"type": "audio/pcm", "rate": 24000},
            "transcription": {"model": "gpt-4o-transcribe", "language": "en-US", "prompt": "JFK"},
            "turn_detection": {"type": "server_vad", "threshold": 0.6, "silence_duration_ms": 700,
                               "create_response": True},
            "noise_reduction": {"type": "near_field"}},
           include=[rt.LOGPROBS_INCLUDE])
    assert (s.encoding, s.sample_rate, s.model, s.model_name, s.language, s.prompt) == \
        ("s16le", 24000, None, "gpt-4o-transcribe", "en", "JFK")
    assert s.vad == Chunking(0.6, 300, 700, explicit=True)
    assert s.noise_reduction == {"type": "near_field"} and s.include == (rt.LOGPROBS_INCLUDE,)


@pytest.mark.parametrize("fmt, encoding, rate", [
    ({"type": "audio/pcmu"}, "mulaw", 8000), ({"type": "audio/pcma"}, "alaw", 8000),
    ({"type": "audio/pcm", "rate": 16000}, "s16le", 16000)])
def test_ga_formats(fmt, encoding, rate):
    s = ga({"format": fmt})
    assert (s.encoding, s.sample_rate) == (encoding, rate)


def test_a_partial_update_keeps_the_rest():
    s = ga({"turn_detection": None})
    s2 = rt.parse_ga_session({"type": "transcription", "audio": {"input": {"transcription": {"language": "es"}}}}, s)
    assert s2.vad is None and s2.language == "es" and s2.model is None
    assert s.stream_key() != DEFAULT.stream_key() and s2.stream_key() != s.stream_key()
    # what the daemon does not see does not restart its stream
    assert ga({"noise_reduction": None}).stream_key() == DEFAULT.stream_key()


def test_keywords_become_the_prompt_and_one_language_is_the_language():
    s = ga({"transcription": {"keywords": ["Kubernetes", "whisperd"], "languages": ["de"]}})
    assert s.prompt == "Kubernetes, whisperd" and s.language == "de"


@pytest.mark.parametrize("session, param", [
    ({"type": "realtime"}, "session.type"),
    ({"type": "transcription", "audio": {"input": {"format": {"type": "audio/opus"}}}},
     "session.audio.input.format.type"),
    ({"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 96000}}}},
     "session.audio.input.format.rate"),
    ({"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcmu", "rate": 24000}}}},
     "session.audio.input.format.rate"),
    ({"type": "transcription", "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 2}}}},
     "session.audio.input.turn_detection"),
    ({"type": "transcription", "audio": {"input": {"turn_detection": {"type": "server_vad",
                                                                      "silence_duration_ms": -1}}}},
     "session.audio.input.turn_detection"),
    ({"type": "transcription", "audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}},
     "session.audio.input.turn_detection.type"),
    ({"type": "transcription", "audio": {"input": {"transcription": {"language": "klingon"}}}},
     "session.audio.input.transcription.language"),
    ({"type": "transcription", "audio": {"input": {"transcription": None}}}, "session.audio.input.transcription"),
    ({"type": "transcription", "audio": {"input": {"colour": "blue"}}}, "session.audio.input.colour"),
    ({"type": "transcription", "include": ["everything"]}, "session.include"),
    ("not an object", "session"),
])
def test_bad_ga_sessions_name_the_parameter(session, param):
    with pytest.raises(rt.RealtimeError) as info:
        rt.parse_ga_session(session, DEFAULT)
    assert info.value.param == param and info.value.message and info.value.type == "invalid_request_error"


def test_beta_session_update():
    s = rt.parse_beta_session({"input_audio_format": "g711_ulaw", "turn_detection": None,
                               "input_audio_transcription": {"model": "whisper-1", "language": "en"},
                               "input_audio_noise_reduction": {"type": "far_field"}}, DEFAULT)
    assert (s.encoding, s.sample_rate, s.vad, s.language) == ("mulaw", 8000, None, "en")
    with pytest.raises(rt.RealtimeError) as info:
        rt.parse_beta_session({"input_audio_format": "mp3"}, DEFAULT)
    assert info.value.param == "session.input_audio_format"


def test_session_objects_have_the_sdk_shapes():
    from openai.types.beta.realtime.transcription_session import TranscriptionSession
    from openai.types.realtime.realtime_transcription_session_create_response import (
        RealtimeTranscriptionSessionCreateResponse,
    )

    s = ga({"format": {"type": "audio/pcmu"}, "turn_detection": None, "transcription": {"language": "en"}})
    got = RealtimeTranscriptionSessionCreateResponse.model_validate(rt.ga_session(s, "sess_1"))
    assert got.audio.input.format.type == "audio/pcmu" and got.audio.input.turn_detection is None
    assert got.audio.input.transcription.language == "en" and got.type == "transcription"
    beta = rt.beta_session(DEFAULT, "sess_1")
    beta["client_secret"] = {"expires_at": 0, "value": ""}  # only present when made over REST
    got_beta = TranscriptionSession.model_validate(beta)
    assert got_beta.input_audio_format == "pcm16" and got_beta.turn_detection.silence_duration_ms == 500


@pytest.mark.parametrize("text, code", [
    ("{not json", "invalid_json"), ("[1, 2]", "invalid_json"), ('{"event_id": "e1"}', "missing_required_parameter"),
    ('{"type": "response.create", "event_id": "e1"}', "invalid_value"),
    ("x" * (rt.MAX_EVENT_BYTES + 1), "event_too_large")])
def test_bad_client_events(text, code):
    with pytest.raises(rt.RealtimeError) as info:
        rt.parse_client_event(text)
    assert info.value.code == code
    event = info.value.event()
    assert event["type"] == "error" and event["event_id"].startswith("event_")
    assert set(event["error"]) == {"type", "code", "message", "param", "event_id"}
    if '"e1"' in text:
        assert event["error"]["event_id"] == "e1"  # which client event it answers


def test_append_audio_is_base64_checked():
    good = rt.parse_client_event(json.dumps({"type": "input_audio_buffer.append",
                                             "audio": base64.b64encode(b"\x01\x02").decode()}))
    assert rt.audio_of(good) == b"\x01\x02"
    for bad in ({"type": "input_audio_buffer.append", "audio": "%%%not base64"},
                {"type": "input_audio_buffer.append"}):
        with pytest.raises(rt.RealtimeError) as info:
            rt.audio_of(rt.parse_client_event(json.dumps(bad)))
        assert info.value.param == "audio"


def test_commit_empty_says_how_much_there_was():
    err = rt.commit_empty(40.0)
    assert err.code == "input_audio_buffer_commit_empty" and "40.00ms" in err.message


def test_deltas_join_to_the_final_text():
    text = rt.ItemText()
    deltas = [text.grow("And so"), text.grow("And so"), text.grow("And so my fellow")]
    last, joined = text.finish("And so my fellow Americans.")
    assert deltas == ["And so", "", " my fellow"] and last == " Americans." and joined
    assert "".join([*deltas, last]) == "And so my fellow Americans."


def test_a_stable_text_that_disagrees_is_never_sent():
    text = rt.ItemText()
    text.grow("ask not")
    assert text.grow("Ask not what") == ""  # not an extension of what was sent
    assert text.finish("Ask, not!") == ("", False)


def test_handshake_subprotocols():
    offered = rt.offered_subprotocols("realtime, openai-insecure-api-key.s3cret, openai-beta.realtime-v1")
    assert rt.subprotocol_key(offered) == "s3cret"
    assert rt.chosen_subprotocol(offered) == "realtime"  # never echo the key when there is another
    assert rt.chosen_subprotocol(["openai-insecure-api-key.k", "openai-beta.realtime-v1"]) == "openai-beta.realtime-v1"
    assert rt.chosen_subprotocol([]) is None and rt.subprotocol_key([]) is None
