"""Render a `Transcript` in OpenAI's five `response_format`s.

One module for both the HTTP shim and `whisperctl`, so a file written by the
CLI is byte-for-byte what the API would have answered. Stdlib only: the shim
imports this without pulling in numpy or an engine.

    json          {"text": ...}, and "logprobs" when asked      application/json
    text          the text and a newline                       text/plain; charset=utf-8
    srt           1 / HH:MM:SS,mmm --> HH:MM:SS,mmm / text     text/plain; charset=utf-8
    vtt           WEBVTT / HH:MM:SS.mmm --> HH:MM:SS.mmm / text text/vtt; charset=utf-8
    verbose_json  task, language (name), duration, text, segments, [words], usage
"""

from __future__ import annotations

import json
import math
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from whisperd.core.errors import InvalidParameter
from whisperd.core.languages import language_name

if TYPE_CHECKING:  # base.py imports numpy; the renderers only read its fields
    from whisperd.core.transcript import Segment, Transcript

RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")

JSON_CONTENT_TYPE = "application/json"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
# OpenAI_API.md allows text/vtt for vtt; it is the registered type, so browsers
# and <track> elements accept the body as-is, and OpenAI clients read any text.
VTT_CONTENT_TYPE = "text/vtt; charset=utf-8"


# --- timestamps ----------------------------------------------------------------------


def to_milliseconds(seconds: float) -> int:
    """Seconds → whole milliseconds, half up, on the decimal the float prints as.

    `round(3661.0005 * 1000)` is 3661000 (banker's rounding of an exact .5);
    going through the float's shortest decimal form gives the 3661001 a person
    expects. Negative or non-finite times (never valid) clamp to 0.
    """
    seconds = float(seconds)
    if not math.isfinite(seconds) or seconds <= 0:
        return 0
    ms = (Decimal(str(seconds)) * 1000).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return int(ms)


def format_timestamp(seconds: float, decimal_marker: str = ".") -> str:
    """`HH:MM:SS.mmm`; hours widen past 99 (`100:00:00.000`) rather than wrap."""
    ms = to_milliseconds(seconds)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1_000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_marker}{ms:03d}"


# --- subtitles -----------------------------------------------------------------------


def _cue_text(text: str) -> str:
    """One cue's text: no blank line (it would end the cue) and no `-->` (it would
    read as a timing line)."""
    lines = (line.strip() for line in text.strip().splitlines())
    return "\n".join(line for line in lines if line).replace("-->", "->")


class SubtitleWriter:
    """Subtitle formats differ only in these attributes (as in openai/whisper utils.py)."""

    header: str
    decimal_marker: str
    numbered: bool
    content_type: str

    def render(self, segments: "tuple[Segment, ...] | list[Segment]") -> str:
        cues = [(s, _cue_text(s.text)) for s in segments]
        cues = [(s, text) for s, text in cues if text]  # a cue without text breaks some players
        out = [self.header]
        for number, (segment, text) in enumerate(cues, start=1):
            start = format_timestamp(segment.start, self.decimal_marker)
            end = format_timestamp(segment.end, self.decimal_marker)
            prefix = f"{number}\n" if self.numbered else ""
            out.append(f"{prefix}{start} --> {end}\n{text}\n\n")
        return "".join(out)


class SRTWriter(SubtitleWriter):
    header = ""
    decimal_marker = ","
    numbered = True
    content_type = TEXT_CONTENT_TYPE  # what OpenAI answers for srt


class VTTWriter(SubtitleWriter):
    header = "WEBVTT\n\n"
    decimal_marker = "."
    numbered = False
    content_type = VTT_CONTENT_TYPE


SUBTITLE_WRITERS: dict[str, SubtitleWriter] = {"srt": SRTWriter(), "vtt": VTTWriter()}


# --- JSON ----------------------------------------------------------------------------


def _dumps(data: dict[str, Any]) -> str:
    # Non-ASCII stays readable UTF-8 rather than \u escapes; compact like OpenAI.
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def verbose_json(transcript: "Transcript", *, words: bool = False) -> dict[str, Any]:
    """The `verbose_json` body as a dict (shapes follow openai.types.audio.TranscriptionVerbose)."""
    # A translation's text is English whatever was spoken; OpenAI reports "english".
    language = "english" if transcript.task == "translate" else language_name(transcript.language)
    body: dict[str, Any] = {
        "task": transcript.task,
        "language": language,
        "duration": float(transcript.duration),
        "text": transcript.text,
        "segments": [
            {
                "id": int(s.id),
                "seek": int(s.seek),
                "start": float(s.start),
                "end": float(s.end),
                "text": s.text,
                "tokens": [int(t) for t in s.tokens],
                "temperature": float(s.temperature),
                "avg_logprob": float(s.avg_logprob),
                "compression_ratio": float(s.compression_ratio),
                "no_speech_prob": float(s.no_speech_prob),
            }
            for s in transcript.segments
        ],
    }
    if words:
        body["words"] = [
            {"word": w.word, "start": float(w.start), "end": float(w.end)}
            for w in transcript.words
        ]
    body["usage"] = {"type": "duration", "seconds": billed_seconds(transcript.duration)}
    return body


def billed_seconds(duration: float) -> int:
    """OpenAI bills whole seconds, rounded up."""
    duration = float(duration)
    return math.ceil(duration) if math.isfinite(duration) and duration > 0 else 0


# --- entry point ---------------------------------------------------------------------


def check_format(fmt: str) -> str:
    """`fmt` if it is one of RESPONSE_FORMATS, else InvalidParameter(param="response_format")."""
    if fmt not in RESPONSE_FORMATS:
        shown = fmt[:40] + "..." if isinstance(fmt, str) and len(fmt) > 40 else fmt
        raise InvalidParameter(
            f"Invalid response_format {shown!r}: must be one of {', '.join(RESPONSE_FORMATS)}.",
            param="response_format",
        )
    return fmt


def render(transcript: "Transcript", fmt: str, *, words: bool = False, logprobs: bool = False) -> tuple[str, str]:
    """(body, content_type) for one response_format. The body is text; send it as UTF-8.

    `words` adds the top-level `words` list to verbose_json (timestamp_granularities
    includes "word"); the other formats ignore it. `logprobs` adds the text tokens'
    `logprobs` list to json (include[]=logprobs, which OpenAI answers with json only).
    """
    check_format(fmt)
    if fmt == "json":
        body: dict[str, Any] = {"text": transcript.text}
        if logprobs:
            body["logprobs"] = [t.to_dict() for t in transcript.logprobs]
        return _dumps(body), JSON_CONTENT_TYPE
    if fmt == "text":
        return transcript.text + "\n", TEXT_CONTENT_TYPE
    if fmt == "verbose_json":
        return _dumps(verbose_json(transcript, words=words)), JSON_CONTENT_TYPE
    writer = SUBTITLE_WRITERS[fmt]
    return writer.render(transcript.segments), writer.content_type


def render_bytes(transcript: "Transcript", fmt: str, *, words: bool = False,
                 logprobs: bool = False) -> tuple[bytes, str]:
    """`render`, encoded as the UTF-8 body an HTTP response sends."""
    body, content_type = render(transcript, fmt, words=words, logprobs=logprobs)
    return body.encode("utf-8"), content_type
