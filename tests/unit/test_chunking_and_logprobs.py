"""OpenAI's chunking_strategy and include[]=logprobs: parsing and bounds, without a model.

The shim's form (multipart fields as the SDKs send them, Open-WebUI's JSON mode), the
protocol's options, the daemon's Job, and the transcript's logprobs on the wire.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shim.errors import STATUS_BY_CODE, error_dict
from shim.form import AudioForm, apply_field, finish
from whisperd.core import chunking, protocol
from whisperd.core.chunking import AUTO, Chunking
from whisperd.core.errors import InvalidParameter, WhisperdError
from whisperd.core.formats import render
from whisperd.core.protocol import Request, TranscribeOptions
from whisperd.core.transcript import Segment, TokenLogprob, Transcript, segment_dict
from whisperd.daemon.requests import Defaults, job_for
from whisperd.engines.base import ModelInfo

TINY_EN = ModelInfo("tiny.en", "ctranslate2", Path("/models/tiny.en"), multilingual=False)
VAD = {"type": "server_vad", "threshold": 0.3, "prefix_padding_ms": 100, "silence_duration_ms": 400}


def form_of(*fields: tuple[str, str]) -> AudioForm:
    form = AudioForm()
    for name, value in fields:
        apply_field(form, name, value, translate=False)
    return finish(form)


def refusal(*fields: tuple[str, str]) -> WhisperdError:
    with pytest.raises(WhisperdError) as info:
        form_of(*fields)
    assert info.value.code == "invalid_parameter"
    return info.value


# --- chunking_strategy in the shim's form ---------------------------------------------------


def test_no_chunking_strategy_is_none():
    assert form_of(("model", "whisper-1")).chunking is None


def test_auto():
    assert form_of(("chunking_strategy", "auto")).chunking == AUTO


def test_the_sdks_flattened_fields_are_one_object():
    # What openai-python (and openai-node) send for chunking_strategy={"type": "server_vad", ...}.
    fields = [(f"chunking_strategy[{k}]", str(v)) for k, v in VAD.items()]
    assert form_of(*fields).chunking == Chunking(0.3, 100, 400, explicit=True)


def test_the_object_as_json_text():
    assert form_of(("chunking_strategy", json.dumps(VAD))).chunking == Chunking(0.3, 100, 400, explicit=True)


def test_missing_settings_take_openais_defaults():
    got = form_of(("chunking_strategy[type]", "server_vad")).chunking
    assert got == Chunking(chunking.DEFAULT_THRESHOLD, chunking.DEFAULT_PREFIX_PADDING_MS,
                           chunking.DEFAULT_SILENCE_DURATION_MS, explicit=True)


@pytest.mark.parametrize("fields, says", [
    ([("chunking_strategy", "manual")], "'auto' or an object"),
    ([("chunking_strategy", "{not json")], "not valid JSON"),
    ([("chunking_strategy", "[1, 2]")], "'auto' or an object"),
    ([("chunking_strategy", '{"type": "semantic_vad"}')], "type must be 'server_vad'"),
    ([("chunking_strategy[threshold]", "0.5")], "type must be 'server_vad'"),
    ([("chunking_strategy[type]", "server_vad"), ("chunking_strategy[eagerness]", "low")], "unknown key"),
    ([("chunking_strategy[type]", "server_vad"), ("chunking_strategy[threshold]", "1.5")], "between 0 and 1"),
    ([("chunking_strategy[type]", "server_vad"), ("chunking_strategy[threshold]", "-0.1")], "between 0 and 1"),
    ([("chunking_strategy[type]", "server_vad"), ("chunking_strategy[threshold]", "high")], "must be a number"),
    ([("chunking_strategy[type]", "server_vad"), ("chunking_strategy[threshold]", "NaN")], "must be a number"),
    ([("chunking_strategy[type]", "server_vad"), ("chunking_strategy[silence_duration_ms]", "10001")],
     "between 0 and 10000"),
    ([("chunking_strategy[type]", "server_vad"), ("chunking_strategy[silence_duration_ms]", "-1")],
     "between 0 and 10000"),
    ([("chunking_strategy[type]", "server_vad"), ("chunking_strategy[silence_duration_ms]", "200.5")],
     "integer"),
    ([("chunking_strategy[type]", "server_vad"), ("chunking_strategy[prefix_padding_ms]", "true")], "integer"),
    ([("chunking_strategy[type]", "server_vad"), ("chunking_strategy[prefix_padding_ms]", "5001")],
     "between 0 and 5000"),
    ([("chunking_strategy", '{"type": "server_vad", "threshold": "0.5"}')], "must be a number"),
    ([("chunking_strategy", "auto"), ("chunking_strategy[type]", "server_vad")], "twice"),
])
def test_bad_chunking_strategy_is_refused_naming_it(fields, says):
    err = refusal(*fields)
    assert err.param == "chunking_strategy"
    assert says in err.message


def test_bounds_themselves_are_accepted():
    fields = [("chunking_strategy[type]", "server_vad"), ("chunking_strategy[threshold]", "1"),
              ("chunking_strategy[prefix_padding_ms]", "0"),
              ("chunking_strategy[silence_duration_ms]", str(chunking.MAX_SILENCE_DURATION_MS))]
    assert form_of(*fields).chunking == Chunking(1.0, 0, chunking.MAX_SILENCE_DURATION_MS, explicit=True)


# --- include[] ----------------------------------------------------------------------------------


def test_include_logprobs():
    form = form_of(("include[]", "logprobs"))
    assert form.logprobs and form.include == ["logprobs"]
    assert not form_of(("model", "whisper-1")).logprobs


@pytest.mark.parametrize("value", ["tokens", "logprobs,words", ""])
def test_other_include_values_are_refused(value):
    if not value:  # an empty field asks for nothing
        assert not form_of(("include[]", value)).logprobs
        return
    assert refusal(("include[]", value)).param == "include"


@pytest.mark.parametrize("fmt", ["text", "srt", "vtt", "verbose_json"])
def test_logprobs_need_json_whatever_the_field_order(fmt):
    for fields in ([("include[]", "logprobs"), ("response_format", fmt)],
                   [("response_format", fmt), ("include[]", "logprobs")]):
        err = refusal(*fields)
        assert err.param == "include" and "json" in err.message


# --- the protocol carries them ------------------------------------------------------------------


def header(options: dict) -> bytes:
    return json.dumps({"v": 1, "op": "transcribe", "id": "r1", "audio_size": 10, "options": options}).encode()


def test_protocol_round_trip():
    options = TranscribeOptions(language="en", chunking=Chunking(0.3, 100, 400, True), logprobs=True)
    req = Request(op="transcribe", id="abc", audio_size=3, options=options)
    assert protocol.parse_request(req.to_frame()[4:]) == req


def test_a_v1_client_that_omits_them_keeps_working():
    parsed = protocol.parse_options({"task": "transcribe", "word_timestamps": False})
    assert parsed.chunking is None and parsed.logprobs is False
    # ...and a new client says nothing of them unless asked (an older daemon refuses unknown options).
    assert set(TranscribeOptions().to_json()) == {"task", "temperature", "word_timestamps"}


@pytest.mark.parametrize("raw, error", [
    ({"chunking": "auto"}, InvalidParameter),
    ({"chunking": {"threshold": 2.0}}, InvalidParameter),
    ({"chunking": {"silence_duration_ms": 99999}}, InvalidParameter),
    ({"chunking": {"prefix_padding_ms": 1.5}}, InvalidParameter),
    ({"chunking": {"type": "server_vad"}}, InvalidParameter),
    ({"chunking": {"explicit": "yes"}}, InvalidParameter),
    ({"logprobs": "true"}, WhisperdError),
])
def test_protocol_checks_them(raw, error):
    with pytest.raises(error) as info:
        protocol.parse_request(header(raw))
    if "chunking" in raw:
        assert info.value.param == "chunking"


def test_the_job_carries_chunking_and_the_options_logprobs():
    options = TranscribeOptions(chunking=Chunking(0.3, 100, 400, True), logprobs=True)
    job = job_for(Request(op="transcribe", id="r-1", audio_size=1, options=options),
                  default=TINY_EN, served={"tiny.en": TINY_EN}, defaults=Defaults())
    assert job.chunking == Chunking(0.3, 100, 400, True) and job.options.logprobs
    plain = job_for(Request(op="transcribe", id="r-2", audio_size=1), default=TINY_EN,
                    served={"tiny.en": TINY_EN}, defaults=Defaults())
    assert plain.chunking is None and not plain.options.logprobs


# --- logprobs in the transcript and the json answer ---------------------------------------------


LOGPROBS = (TokenLogprob(" Hello", -0.25, tuple(b" Hello")), TokenLogprob(" w\xf6rld", -1.5, tuple(" wörld".encode())))


def test_segment_logprobs_cross_the_wire_only_when_present():
    seg = Segment(0, 0, 0.0, 1.0, " Hello wörld", logprobs=LOGPROBS)
    assert Segment.from_dict(json.loads(json.dumps(segment_dict(seg)))) == seg
    assert "logprobs" not in segment_dict(Segment(0, 0, 0.0, 1.0, " Hi"))


def test_json_answer_concatenates_the_segments_logprobs():
    t = Transcript("Hello wörld again", "en", 2.0, (Segment(0, 0, 0.0, 1.0, " Hello wörld", logprobs=LOGPROBS),
                   Segment(1, 0, 1.0, 2.0, " again", logprobs=(TokenLogprob(" again", -0.1, tuple(b" again")),))))
    body = json.loads(render(t, "json", logprobs=True)[0])
    assert body["text"] == "Hello wörld again"
    assert [p["token"] for p in body["logprobs"]] == [" Hello", " wörld", " again"]
    assert body["logprobs"][1] == {"token": " wörld", "logprob": -1.5, "bytes": list(" wörld".encode())}
    assert json.loads(render(t, "json")[0]) == {"text": "Hello wörld again"}


@pytest.mark.parametrize("fields, param", [
    ([("include[]", "tokens")], "include"),
    ([("chunking_strategy[type]", "server_vad"), ("chunking_strategy[threshold]", "9")], "chunking_strategy"),
])
def test_refusals_are_400s_in_openais_shape(fields, param):
    err = refusal(*fields)
    assert STATUS_BY_CODE[err.code] == (400, "invalid_request_error")
    assert error_dict(err) == {"error": {"message": err.message, "type": "invalid_request_error",
                                         "param": param, "code": "invalid_parameter"}}


# --- whisperctl --------------------------------------------------------------------------------


def test_whisperctl_chunking_flag():
    from whisperd.client.cli import build_parser

    args = build_parser().parse_args(["transcribe", "a.wav", "--chunking", json.dumps(VAD)])
    assert args.chunking == Chunking(0.3, 100, 400, explicit=True)
    assert build_parser().parse_args(["transcribe", "a.wav", "--chunking", "auto"]).chunking == AUTO
    with pytest.raises(SystemExit):
        build_parser().parse_args(["transcribe", "a.wav", "--chunking", '{"type": "server_vad", "threshold": 2}'])


def test_whisperctl_logprobs_need_json(capsys):
    from whisperd.client.cli import EXIT_USAGE, main

    assert main(["transcribe", "a.wav", "--logprobs", "--format", "text"]) == EXIT_USAGE
    assert "--logprobs needs --format json" in capsys.readouterr().err
