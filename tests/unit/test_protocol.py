"""Pure codec tests for protocol v1: framing and header validation."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from whisperd.core import protocol
from whisperd.core.errors import (
    FrameTooLarge,
    InvalidParameter,
    ProtocolError,
    UnknownOp,
    UnsupportedVersion,
    WhisperdError,
)


def header(**fields) -> bytes:
    base = {"v": 1, "op": "transcribe", "id": "r1", "audio_size": 10}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


def test_request_round_trip():
    req = protocol.Request(
        op="transcribe", id="abc", model="whisper-1", audio_size=123,
        options=protocol.TranscribeOptions(language="en", temperature=0.2, word_timestamps=True),
        progress=True,
    )
    raw = req.to_frame()
    length = protocol.parse_length(raw[:4], protocol.MAX_HEADER)
    assert length == len(raw) - 4
    assert protocol.parse_request(raw[4:]) == req


def test_reply_frames_round_trip():
    for raw in (
        protocol.result_frame("a", {"text": "héllo"}),
        protocol.error_frame("a", InvalidParameter("bad", param="language")),
        protocol.progress_frame("a", 0.5),
        protocol.segment_frame("a", {"text": "x"}),
    ):
        reply = protocol.parse_reply(raw[4:])
        assert reply["id"] == "a" and reply["v"] == 1


def test_error_crosses_the_wire_with_its_code_and_param():
    raw = protocol.error_frame("a", InvalidParameter("bad language", param="language"))
    err = WhisperdError.from_wire(protocol.parse_reply(raw[4:])["error"])
    assert isinstance(err, InvalidParameter)
    assert (err.code, err.param, err.message) == ("invalid_parameter", "language", "bad language")


def test_oversized_length_is_refused_before_reading():
    with pytest.raises(FrameTooLarge):
        protocol.parse_length((protocol.MAX_HEADER + 1).to_bytes(4, "big"), protocol.MAX_HEADER)
    with pytest.raises(FrameTooLarge):
        protocol.parse_length(b"\xff\xff\xff\xff", protocol.MAX_HEADER)


def test_truncated_length_prefix():
    with pytest.raises(ProtocolError):
        protocol.parse_length(b"\x00\x01", protocol.MAX_HEADER)


@pytest.mark.parametrize(
    "payload, error",
    [
        (b"\xff\xfe garbage", ProtocolError),
        (b"[1, 2]", ProtocolError),
        (b"{", ProtocolError),
        (header(v=3), UnsupportedVersion),
        (header(v=True), UnsupportedVersion),
        (header(v=...), UnsupportedVersion),
        (header(op="explode"), UnknownOp),
        (header(op=...), UnknownOp),
        (header(id="../../etc/passwd"), ProtocolError),
        (header(id=7), ProtocolError),
        (header(audio_size=-1), ProtocolError),
        (header(audio_size="10"), ProtocolError),
        (header(audio_size=True), ProtocolError),
        (header(audio_size=...), ProtocolError),
        (header(audio_size=protocol.DEFAULT_MAX_AUDIO + 1), FrameTooLarge),
        (header(options=[]), ProtocolError),
        (header(options={"colour": "red"}), ProtocolError),
        (header(options={"task": "summarise"}), InvalidParameter),
        (header(options={"temperature": 1.5}), InvalidParameter),
        (header(options={"temperature": "hot"}), ProtocolError),
        (header(options={"word_timestamps": 1}), ProtocolError),
        (header(options={"beam_size": 0}), InvalidParameter),
        (header(options={"prompt": "x" * (protocol.MAX_PROMPT + 1)}), InvalidParameter),
        (b"{" + b" " * protocol.MAX_HEADER + b"}", FrameTooLarge),
    ],
)
def test_bad_headers_raise_typed_errors(payload, error):
    with pytest.raises(error):
        protocol.parse_request(payload)


def test_missing_id_is_assigned():
    assert len(protocol.parse_request(header(id=...)).id) == 16


def test_status_needs_no_audio():
    req = protocol.parse_request(json.dumps({"v": 1, "op": "status"}).encode())
    assert req.op == "status" and req.audio_size == 0


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_crash_the_header_parser(data):
    try:
        protocol.parse_request(data)
    except WhisperdError:
        pass  # a typed refusal is the only acceptable failure


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["v", "op", "id", "audio_size", "options", "model", "progress"]),
                       st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                                 st.text(max_size=80), st.lists(st.integers(), max_size=3),
                                 st.dictionaries(st.text(max_size=12), st.integers(), max_size=3))))
def test_arbitrary_json_headers_never_crash(obj):
    try:
        req = protocol.parse_request(json.dumps(obj).encode())
    except WhisperdError:
        return
    assert req.op in protocol.OPS
    assert 0 <= req.audio_size <= protocol.DEFAULT_MAX_AUDIO


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.integers(min_value=0, max_value=1 << 20))
def test_stream_reader_never_reads_past_the_limit(data, limit):
    async def read() -> bytes:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await protocol.read_frame(reader, limit)

    try:
        payload = asyncio.run(read())
    except (EOFError, WhisperdError):
        return
    assert len(payload) <= limit
