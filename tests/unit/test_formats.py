"""The five response formats against golden files, and the language table.

Goldens live in tests/golden/; each is what a client receives byte for byte
(verbose JSON is stored indented for reading and compared after re-dumping).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openai.types.audio import Transcription, TranscriptionVerbose

from whisperd.core.errors import InvalidParameter
from whisperd.core.formats import (
    RESPONSE_FORMATS,
    format_timestamp,
    render,
    render_bytes,
    to_milliseconds,
)
from whisperd.core.languages import (
    LANGUAGES,
    TO_LANGUAGE_CODE,
    language_name,
    normalize_language,
)
from whisperd.core.transcript import Segment, Transcript, Word

GOLDEN = Path(__file__).parent.parent / "golden"

SEGMENT_FIELDS = {
    "id", "seek", "start", "end", "text", "tokens",
    "temperature", "avg_logprob", "compression_ratio", "no_speech_prob",
}


def sample_transcript(task: str = "transcribe") -> Transcript:
    segments = (
        Segment(
            id=0, seek=0, start=0.0, end=2.5, text=" Hello, world.",
            tokens=(50364, 2425, 11, 1002, 13), temperature=0.0,
            avg_logprob=-0.25, compression_ratio=0.8, no_speech_prob=0.01,
            words=(Word(" Hello,", 0.0, 1.2, 0.9), Word(" world.", 1.2, 2.5, 0.95)),
        ),
        # Empty text: kept in verbose_json, skipped as a subtitle cue.
        Segment(id=1, seek=0, start=2.5, end=4.0, text=" ", no_speech_prob=0.7),
        Segment(
            id=2, seek=400, start=4.0, end=6.1234, text=" Grüße aus Köln — 你好",
            tokens=(1, 2, 3), temperature=0.2, avg_logprob=-0.5,
            compression_ratio=1.1, no_speech_prob=0.02,
            words=(Word(" Grüße", 4.0, 4.6), Word(" aus", 4.6, 4.9),
                   Word(" Köln", 4.9, 5.5), Word(" — 你好", 5.5, 6.1234)),
        ),
        # 3661.0005 s is exactly 3661000.5 ms as a float: half-up gives ,001
        # (Python's round() would give ,000); the end carries into the next second.
        Segment(
            id=3, seek=366100, start=3661.0005, end=3662.9995, text=" Late cue.",
            tokens=(4, 5), avg_logprob=-0.1, compression_ratio=0.9,
            words=(Word(" Late", 3661.0005, 3661.9), Word(" cue.", 3661.9, 3662.9995)),
        ),
    )
    return Transcript(
        text="Hello, world. Grüße aus Köln — 你好 Late cue.",
        language="de",
        duration=3663.2,
        segments=segments,
        task=task,
    )


def golden_text(name: str) -> str:
    return (GOLDEN / name).read_text(encoding="utf-8")


def test_srt_matches_golden():
    body, content_type = render(sample_transcript(), "srt")
    assert body == golden_text("sample.srt")
    assert content_type == "text/plain; charset=utf-8"


def test_vtt_matches_golden():
    body, content_type = render(sample_transcript(), "vtt")
    assert body == golden_text("sample.vtt")
    assert body.startswith("WEBVTT\n\n")
    assert content_type == "text/vtt; charset=utf-8"


def test_verbose_json_matches_golden_and_sdk_model():
    body, content_type = render(sample_transcript(), "verbose_json", words=True)
    golden = json.loads(golden_text("sample.verbose.json"))
    # Exact bytes: key order, compact separators, non-ASCII left unescaped.
    assert body == json.dumps(golden, ensure_ascii=False, separators=(",", ":"))
    assert content_type == "application/json"
    assert "Grüße" in body and "\\u" not in body

    data = json.loads(body)
    assert data["language"] == "german"
    assert data["usage"] == {"type": "duration", "seconds": 3664}
    assert all(set(s) == SEGMENT_FIELDS for s in data["segments"])

    parsed = TranscriptionVerbose.model_validate(data)
    assert parsed.language == "german"
    assert len(parsed.segments) == 4 and len(parsed.words) == 8
    assert parsed.usage.seconds == 3664 and parsed.usage.type == "duration"


def test_verbose_json_words_only_when_asked():
    data = json.loads(render(sample_transcript(), "verbose_json")[0])
    assert "words" not in data
    TranscriptionVerbose.model_validate(data)


def test_verbose_json_translation_reports_english():
    data = json.loads(render(sample_transcript(task="translate"), "verbose_json")[0])
    assert data["task"] == "translate" and data["language"] == "english"


def test_json_and_text():
    body, content_type = render(sample_transcript(), "json")
    assert body == '{"text":"Hello, world. Grüße aus Köln — 你好 Late cue."}'
    assert content_type == "application/json"
    assert Transcription.model_validate(json.loads(body)).text.endswith("Late cue.")

    body, content_type = render(sample_transcript(), "text")
    assert body == "Hello, world. Grüße aus Köln — 你好 Late cue.\n"
    assert content_type == "text/plain; charset=utf-8"


def test_render_bytes_is_utf8():
    body, content_type = render_bytes(sample_transcript(), "json")
    assert isinstance(body, bytes) and "你好".encode("utf-8") in body
    assert content_type == "application/json"


def test_empty_transcript_renders_every_format():
    empty = Transcript(text="", language="en", duration=0.0)
    assert render(empty, "srt")[0] == ""
    assert render(empty, "vtt")[0] == "WEBVTT\n\n"
    data = json.loads(render(empty, "verbose_json", words=True)[0])
    assert data["segments"] == [] and data["words"] == []
    assert data["usage"]["seconds"] == 0
    TranscriptionVerbose.model_validate(data)


@pytest.mark.parametrize("fmt", ["xml", "JSON", "", "verbose-json"])
def test_invalid_format_is_a_parameter_error(fmt):
    with pytest.raises(InvalidParameter) as caught:
        render(sample_transcript(), fmt)
    err = caught.value
    assert err.code == "invalid_parameter" and err.param == "response_format"
    assert all(valid in err.message for valid in RESPONSE_FORMATS)


@pytest.mark.parametrize(
    "seconds, expected",
    [
        (0.0, "00:00:00.000"),
        (0.0015, "00:00:00.002"),  # half up, not to even
        (59.9995, "00:01:00.000"),  # carries through seconds and minutes
        (3661.0005, "01:01:01.001"),
        (360000.0, "100:00:00.000"),  # hours widen instead of wrapping
        (-0.5, "00:00:00.000"),
    ],
)
def test_format_timestamp(seconds, expected):
    assert format_timestamp(seconds) == expected


def test_milliseconds_accept_numpy_like_floats():
    class Float32Like(float):  # numpy scalars subclass float or convert via float()
        pass

    assert to_milliseconds(Float32Like(1.2345)) == 1235


def test_cue_text_never_breaks_a_cue():
    transcript = Transcript(
        text="a b", language="en", duration=1.0,
        segments=(Segment(0, 0, 0.0, 1.0, " a\n\n b --> c "),),
    )
    assert render(transcript, "srt")[0] == "1\n00:00:00,000 --> 00:00:01,000\na\nb -> c\n\n"


# --- languages ---------------------------------------------------------------------


def test_language_table_matches_whisper():
    assert len(LANGUAGES) == 100 and LANGUAGES["yue"] == "cantonese"
    assert LANGUAGES["en"] == "english" and LANGUAGES["haw"] == "hawaiian"
    assert all(name == name.lower() for name in LANGUAGES.values())
    for alias, code in {"burmese": "my", "castilian": "es", "mandarin": "zh",
                        "moldovan": "ro", "valencian": "ca"}.items():
        assert TO_LANGUAGE_CODE[alias] == code


@pytest.mark.parametrize(
    "value, code",
    [("en", "en"), ("EN", "en"), (" en ", "en"), ("English", "en"),
     ("yue", "yue"), ("Haitian Creole", "ht"), ("castilian", "es"), ("HAW", "haw"),
     ("en-US", "en"), ("pt_BR", "pt"), ("zh-Hant-TW", "zh"), ("ES-419", "es")],
)
def test_normalize_language_accepts_codes_and_names(value, code):
    assert normalize_language(value) == code


@pytest.mark.parametrize("value", ["xx", "", "  ", "xx-US", "-en", "english-US", "klingon", "e n"])
def test_normalize_language_refuses_unknown(value):
    with pytest.raises(InvalidParameter) as caught:
        normalize_language(value)
    err = caught.value
    assert err.code == "invalid_parameter" and err.param == "language"
    assert repr(value) in err.message and "ISO-639-1" in err.message and '"en"' in err.message


def test_language_name_passes_unknown_codes_through():
    assert language_name("de") == "german"
    assert language_name("zz") == "zz"
