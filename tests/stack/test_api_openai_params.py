"""OpenAI's chunking_strategy and include[]=logprobs through the official SDK against the real stack.

The SDK flattens `chunking_strategy={...}` into `chunking_strategy[key]` multipart fields and
sends `include=["logprobs"]` as `include[]`; these tests go through exactly that. Validation
runs on the faster-whisper stack; real log probabilities on both engines.
"""

from __future__ import annotations

import math

import pytest
from openai import BadRequestError, OpenAI

from testing.speech import JFK_FILE, JFK_TEXT, LONG_FILE, LONG_TEXT, word_recall

VAD = {"type": "server_vad", "prefix_padding_ms": 200, "silence_duration_ms": 500, "threshold": 0.4}


def sdk(stack) -> OpenAI:
    return OpenAI(base_url=stack.url + "/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.mark.parametrize("strategy", ["auto", VAD, {"type": "server_vad"}])
def test_chunking_strategy_is_accepted(fw_stack, strategy):
    with sdk(fw_stack) as client:
        got = client.audio.transcriptions.create(model="whisper-1", file=JFK_FILE, chunking_strategy=strategy)
    assert word_recall(JFK_TEXT, got.text) >= 0.8, got.text


@pytest.mark.parametrize("strategy", [
    "manual",
    {"type": "semantic_vad"},
    {"type": "server_vad", "threshold": 1.5},
    {"type": "server_vad", "silence_duration_ms": 60_000},
    {"type": "server_vad", "prefix_padding_ms": -5},
    {"type": "server_vad", "prefix_padding_ms": "soon"},
    {"type": "server_vad", "eagerness": "low"},
])
def test_bad_chunking_strategy_is_400_naming_it(fw_stack, strategy):
    with sdk(fw_stack) as client, pytest.raises(BadRequestError) as info:
        client.audio.transcriptions.create(model="whisper-1", file=JFK_FILE, chunking_strategy=strategy)
    error = info.value.response.json()["error"]
    assert (info.value.status_code, error["param"], error["code"]) == (400, "chunking_strategy", "invalid_parameter")
    assert set(error) == {"message", "type", "param", "code"} and error["message"]


def assert_plausible(logprobs, text: str) -> None:
    assert logprobs, "no logprobs"
    for p in logprobs:
        assert math.isfinite(p.logprob) and p.logprob <= 0.0, p
        assert bytes(int(b) for b in p.bytes) == p.token.encode("utf-8"), p
    # Most tokens of clear speech are likely, a few are not: real probabilities, not placeholders.
    assert any(p.logprob < -0.01 for p in logprobs)
    assert sum(p.logprob for p in logprobs) / len(logprobs) > -1.0
    assert "".join(p.token for p in logprobs).strip() == text


def test_logprobs_with_json(stack):
    with sdk(stack) as client:
        got = client.audio.transcriptions.create(model="whisper-1", file=JFK_FILE, include=["logprobs"])
        plain = client.audio.transcriptions.create(model="whisper-1", file=JFK_FILE)
    assert word_recall(JFK_TEXT, got.text) >= 0.8, got.text
    assert_plausible(got.logprobs, got.text)
    assert plain.logprobs is None and plain.text == got.text  # asked for or not, the same words


def test_logprobs_stream_per_segment_on_a_long_file(fw_stack):
    """Several windows (the 30 s path): each delta carries its segment's tokens, done all of them."""
    with sdk(fw_stack) as client:
        events = list(client.audio.transcriptions.create(model="whisper-1", file=LONG_FILE, stream=True,
                                                         include=["logprobs"]))
    deltas, done = events[:-1], events[-1]
    assert done.type == "transcript.text.done" and len(deltas) >= 2
    assert word_recall(LONG_TEXT, done.text) >= 0.8, done.text
    assert_plausible(done.logprobs, done.text)
    for delta in deltas:
        assert "".join(p.token for p in delta.logprobs) == delta.delta
    assert [p.token for d in deltas for p in d.logprobs] == [p.token for p in done.logprobs]


@pytest.mark.parametrize("kwargs", [
    {"include": ["tokens"]},
    {"include": ["logprobs"], "response_format": "text"},
    {"include": ["logprobs"], "response_format": "verbose_json"},
    {"include": ["logprobs"], "response_format": "srt"},
])
def test_bad_include_is_400_naming_it(fw_stack, kwargs):
    with sdk(fw_stack) as client, pytest.raises(BadRequestError) as info:
        client.audio.transcriptions.create(model="whisper-1", file=JFK_FILE, **kwargs)
    error = info.value.response.json()["error"]
    assert (info.value.status_code, error["param"], error["code"]) == (400, "include", "invalid_parameter")
