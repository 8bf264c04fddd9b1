"""OpenAI Realtime transcription, as data: the session's settings, the client's events, ours.

Pure functions and small types, no sockets (`shim/realtime.py` runs the WebSocket).
Two dialects of the same protocol reach us (`docs/realtime.md`):

    GA    session.update {"session": {"type": "transcription", "audio": {"input": {
              "format": {"type": "audio/pcm", "rate": 24000}, "transcription": {...},
              "turn_detection": {...} | null, "noise_reduction": ...}}, "include": [...]}}
          → session.created / session.updated, conversation.item.added + .done
    beta  transcription_session.update {"session": {"input_audio_format": "pcm16",
              "input_audio_transcription": {...}, "turn_detection": ..., ...}}
          → transcription_session.created / .updated, conversation.item.created

Both come down to one `TranscriptionSettings`, which is what the daemon's live stream
needs (`whisperd.core.live.StreamSettings` plus model, language, prompt). Every bad
value is a `RealtimeError` carrying OpenAI's `code` and `param`, sent back as an
`error` event; the session stays as it was.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import secrets
from dataclasses import dataclass, field
from typing import Any, Mapping

from whisperd.core import chunking
from whisperd.core.chunking import Chunking
from whisperd.core.errors import InvalidParameter
from whisperd.core.languages import normalize_language
from whisperd.core.live import LIVE_SILENCE_MS, MAX_RATE, MIN_RATE
from whisperd.core.model_names import DEFAULT_ALIASES

# OpenAI takes up to 15 MiB per client event; larger ones get an `error` (the socket stays open).
MAX_EVENT_BYTES = 15 << 20
PCM_RATE = 24_000  # OpenAI's audio/pcm and pcm16: 16-bit little-endian mono at 24 kHz
G711_RATE = 8_000
MIN_COMMIT_MS = 100  # OpenAI refuses to commit less than this

# Transcription model names OpenAI clients send that mean "the default model" here (besides
# the HTTP API's aliases): the GA SDK lists these for `audio.input.transcription.model`.
REALTIME_DEFAULT_ALIASES = (*DEFAULT_ALIASES, "gpt-4o-mini-transcribe-2025-12-15", "gpt-4o-transcribe-diarize",
                            "gpt-transcribe", "gpt-live-transcribe", "gpt-realtime-whisper")

GA_FORMATS = {"audio/pcm": "s16le", "audio/pcmu": "mulaw", "audio/pcma": "alaw"}
BETA_FORMATS = {"pcm16": "s16le", "g711_ulaw": "mulaw", "g711_alaw": "alaw"}
LOGPROBS_INCLUDE = "item.input_audio_transcription.logprobs"
NOISE_REDUCTION_TYPES = ("near_field", "far_field")
# server_vad keys that steer responses of a conversation model: meaningless here, accepted.
VAD_RESPONSE_KEYS = ("create_response", "interrupt_response", "idle_timeout_ms")

CLIENT_EVENTS = ("session.update", "transcription_session.update", "input_audio_buffer.append",
                 "input_audio_buffer.commit", "input_audio_buffer.clear")

# The WebSocket subprotocols browsers use, since a page cannot set an Authorization header.
KEY_SUBPROTOCOL = "openai-insecure-api-key."
BETA_SUBPROTOCOL = "openai-beta.realtime-v1"
PLAIN_SUBPROTOCOL = "realtime"


class RealtimeError(Exception):
    """A client event we refuse; `code`, `param` and `type` as OpenAI's `error` event has them."""

    def __init__(self, code: str, message: str, *, param: str | None = None,
                 type_: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.code, self.message, self.param, self.type = code, message, param, type_
        self.event_id: str | None = None  # the client event it answers, once known

    def event(self, client_event_id: str | None = None) -> dict[str, Any]:
        return error_event(self.code, self.message, param=self.param, type_=self.type,
                           client_event_id=client_event_id or self.event_id)


def _invalid(param: str, message: str) -> RealtimeError:
    return RealtimeError("invalid_value", message, param=param)


def _unknown_keys(raw: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
    for key in raw:
        if key not in known:
            raise RealtimeError("unknown_parameter", f"Unknown parameter: '{where}.{str(key)[:60]}'.",
                                param=f"{where}.{str(key)[:60]}")


def _object(raw: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise RealtimeError("invalid_type", f"Invalid type for '{where}': expected an object, "
                            f"but got {type(raw).__name__}.", param=where)
    return raw


def _optional_text(raw: Mapping[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise RealtimeError("invalid_type", f"Invalid type for '{where}.{key}': expected a string.",
                            param=f"{where}.{key}")
    return value or None


# --- the session ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TranscriptionSettings:
    """What a session transcribes and how; the first six fields make the daemon's stream."""

    encoding: str = "s16le"
    sample_rate: int = PCM_RATE
    vad: Chunking | None = Chunking(silence_duration_ms=LIVE_SILENCE_MS, explicit=True)
    model: str | None = None  # None: the daemon's default
    language: str | None = None
    prompt: str | None = None
    # Kept only to be echoed in the session object (`docs/realtime.md` says why they are ignored).
    model_name: str = "whisper-1"
    noise_reduction: Mapping[str, Any] | None = None
    include: tuple[str, ...] = ()

    def stream_key(self) -> tuple[Any, ...]:
        """Two settings with the same key can share one daemon stream."""
        return (self.encoding, self.sample_rate, self.vad, self.model, self.language, self.prompt)

    @property
    def bytes_per_ms(self) -> float:
        return self.sample_rate * (2 if self.encoding == "s16le" else 1) / 1000


def _vad(raw: Any, where: str) -> Chunking | None:
    """`turn_detection`: null (the client commits) or server_vad with OpenAI's Realtime defaults."""
    if raw is None:
        return None
    raw = _object(raw, where)
    kind = raw.get("type", chunking.SERVER_VAD)
    if kind == "semantic_vad":
        raise RealtimeError("unsupported_value", f"'{where}.type' semantic_vad is not supported here; "
                            "use server_vad or null", param=f"{where}.type")
    given = {k: v for k, v in raw.items() if k not in VAD_RESPONSE_KEYS and k != "eagerness"}
    merged = {"threshold": chunking.DEFAULT_THRESHOLD, "prefix_padding_ms": chunking.DEFAULT_PREFIX_PADDING_MS,
              "silence_duration_ms": LIVE_SILENCE_MS, **given, "type": kind}
    try:
        return chunking.from_openai(merged, param=where)
    except InvalidParameter as err:
        raise RealtimeError("invalid_value", err.message, param=err.param) from None


def _noise_reduction(raw: Any, where: str) -> Mapping[str, Any] | None:
    if raw is None:
        return None
    raw = _object(raw, where)
    _unknown_keys(raw, ("type", "strength"), where)
    if raw.get("type") is not None and raw["type"] not in NOISE_REDUCTION_TYPES:
        raise _invalid(f"{where}.type", f"Invalid value for '{where}.type': {str(raw['type'])[:40]!r}; "
                       f"supported: {', '.join(NOISE_REDUCTION_TYPES)}.")
    return dict(raw)


def _include(raw: Any, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or any(v != LOGPROBS_INCLUDE for v in raw):
        raise _invalid(where, f"Invalid value for '{where}': the only value is '{LOGPROBS_INCLUDE}'.")
    return tuple(raw)


def _transcription(raw: Any, where: str, *, ga: bool) -> dict[str, Any]:
    if raw is None:
        raise RealtimeError("unsupported_value", f"'{where}' cannot be null here: this server only transcribes",
                            param=where)
    raw = _object(raw, where)
    known = ("model", "language", "prompt", *(("delay", "keywords", "languages") if ga else ()))
    _unknown_keys(raw, known, where)
    model_name = _optional_text(raw, "model", where) or "whisper-1"
    language = _optional_text(raw, "language", where)
    languages = raw.get("languages")
    if languages is not None:
        if not isinstance(languages, list) or len(languages) > 1 or (language and languages != [language]):
            raise RealtimeError("unsupported_value", f"'{where}.languages' may name one language here "
                                "(Whisper detects or is told one)", param=f"{where}.languages")
        language = language or (languages[0] if languages else None)
    if language is not None:
        try:
            language = normalize_language(language)
        except InvalidParameter as err:
            raise _invalid(f"{where}.language", err.message) from None
    prompt = _optional_text(raw, "prompt", where)
    keywords = raw.get("keywords")
    if keywords is not None:
        if not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
            raise RealtimeError("invalid_type", f"'{where}.keywords' must be a list of strings",
                                param=f"{where}.keywords")
        # Whisper's prompt is the way to hand it the spelling of words it should expect.
        prompt = ", ".join([*keywords, *([prompt] if prompt else [])]) or None
    model = None if model_name in REALTIME_DEFAULT_ALIASES else model_name
    return {"model": model, "model_name": model_name, "language": language, "prompt": prompt}


def parse_ga_session(raw: Any, current: TranscriptionSettings) -> TranscriptionSettings:
    """`session.update`'s session (GA): the fields it names replace the current ones."""
    where = "session"
    raw = _object(raw, where)
    _unknown_keys(raw, ("type", "audio", "include", "object", "id", "expires_at"), where)
    if raw.get("type", "transcription") != "transcription":
        raise _invalid("session.type", f"Invalid value for 'session.type': {str(raw.get('type'))[:40]!r}; this "
                       "endpoint serves transcription sessions only ('transcription').")
    changes: dict[str, Any] = {}
    if "include" in raw:
        changes["include"] = _include(raw["include"], "session.include")
    audio = _object(raw.get("audio") or {}, "session.audio")
    _unknown_keys(audio, ("input",), "session.audio")
    source = _object(audio.get("input") or {}, "session.audio.input")
    where = "session.audio.input"
    _unknown_keys(source, ("format", "noise_reduction", "transcription", "turn_detection"), where)
    if "format" in source:
        changes.update(_ga_format(source["format"], f"{where}.format"))
    if "noise_reduction" in source:
        changes["noise_reduction"] = _noise_reduction(source["noise_reduction"], f"{where}.noise_reduction")
    if "transcription" in source:
        changes.update(_transcription(source["transcription"], f"{where}.transcription", ga=True))
    if "turn_detection" in source:
        changes["vad"] = _vad(source["turn_detection"], f"{where}.turn_detection")
    return dataclasses.replace(current, **changes)


def _ga_format(raw: Any, where: str) -> dict[str, Any]:
    raw = _object(raw, where)
    _unknown_keys(raw, ("type", "rate"), where)
    kind = raw.get("type", "audio/pcm")
    if kind not in GA_FORMATS:
        raise _invalid(f"{where}.type", f"Invalid value for '{where}.type': {str(kind)[:40]!r}; supported: "
                       f"{', '.join(GA_FORMATS)}.")
    encoding = GA_FORMATS[kind]
    default = PCM_RATE if encoding == "s16le" else G711_RATE
    rate = raw.get("rate", default)
    # PCM at another rate than OpenAI's 24 kHz is our extension (the daemon resamples any);
    # G.711 is 8 kHz by definition.
    ok = (isinstance(rate, int) and not isinstance(rate, bool)
          and (MIN_RATE <= rate <= MAX_RATE if encoding == "s16le" else rate == G711_RATE))
    if not ok:
        allowed = f"{MIN_RATE} to {MAX_RATE} (OpenAI: {PCM_RATE})" if encoding == "s16le" else str(G711_RATE)
        raise _invalid(f"{where}.rate", f"Invalid value for '{where}.rate': {str(rate)[:20]}; {kind} takes {allowed}.")
    return {"encoding": encoding, "sample_rate": rate}


def parse_beta_session(raw: Any, current: TranscriptionSettings) -> TranscriptionSettings:
    """`transcription_session.update`'s session (beta)."""
    where = "session"
    raw = _object(raw, where)
    _unknown_keys(raw, ("input_audio_format", "input_audio_transcription", "turn_detection",
                        "input_audio_noise_reduction", "include", "modalities", "client_secret"), where)
    changes: dict[str, Any] = {}
    if "input_audio_format" in raw:
        fmt = raw["input_audio_format"]
        if fmt not in BETA_FORMATS:
            raise _invalid("session.input_audio_format", f"Invalid value for 'session.input_audio_format': "
                           f"{str(fmt)[:40]!r}; supported: {', '.join(BETA_FORMATS)}.")
        changes["encoding"] = BETA_FORMATS[fmt]
        changes["sample_rate"] = PCM_RATE if fmt == "pcm16" else G711_RATE
    if "input_audio_transcription" in raw:
        changes.update(_transcription(raw["input_audio_transcription"], "session.input_audio_transcription",
                                      ga=False))
    if "turn_detection" in raw:
        changes["vad"] = _vad(raw["turn_detection"], "session.turn_detection")
    if "input_audio_noise_reduction" in raw:
        changes["noise_reduction"] = _noise_reduction(raw["input_audio_noise_reduction"],
                                                      "session.input_audio_noise_reduction")
    if "include" in raw:
        changes["include"] = _include(raw["include"], "session.include")
    return dataclasses.replace(current, **changes)


def _turn_detection(vad: Chunking | None) -> dict[str, Any] | None:
    if vad is None:
        return None
    return {"type": "server_vad", "threshold": vad.threshold, "prefix_padding_ms": vad.prefix_padding_ms,
            "silence_duration_ms": vad.silence_duration_ms}


def _transcription_object(s: TranscriptionSettings) -> dict[str, Any]:
    return {"model": s.model_name, "language": s.language, "prompt": s.prompt or ""}


def ga_session(s: TranscriptionSettings, session_id: str) -> dict[str, Any]:
    """The GA transcription session object (`RealtimeTranscriptionSessionCreateResponse`)."""
    kind = next(k for k, v in GA_FORMATS.items() if v == s.encoding)
    fmt: dict[str, Any] = {"type": kind, **({"rate": s.sample_rate} if s.encoding == "s16le" else {})}
    return {"type": "transcription", "object": "realtime.transcription_session", "id": session_id,
            "expires_at": 0, "include": list(s.include),
            "audio": {"input": {"format": fmt, "noise_reduction": s.noise_reduction,
                                "transcription": _transcription_object(s),
                                "turn_detection": _turn_detection(s.vad)}}}


def beta_session(s: TranscriptionSettings, session_id: str) -> dict[str, Any]:
    """The beta transcription session object (`beta.realtime.TranscriptionSession`)."""
    fmt = next(k for k, v in BETA_FORMATS.items() if v == s.encoding)
    return {"id": session_id, "object": "realtime.transcription_session", "expires_at": 0,
            "modalities": ["text"], "input_audio_format": fmt,
            "input_audio_transcription": _transcription_object(s), "turn_detection": _turn_detection(s.vad),
            "input_audio_noise_reduction": s.noise_reduction, "include": list(s.include)}


# --- client events -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientEvent:
    type: str
    event_id: str | None
    body: Mapping[str, Any] = field(default_factory=dict)


def parse_client_event(text: str) -> ClientEvent:
    """One WebSocket text message → the event; RealtimeError for anything we cannot take."""
    if len(text) > MAX_EVENT_BYTES:  # characters: the base64 and JSON of an event are ASCII
        raise RealtimeError("event_too_large", f"The event is {len(text)} bytes; the most one event may carry "
                            f"is {MAX_EVENT_BYTES} bytes (15 MiB): send the audio in smaller appends.")
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise RealtimeError("invalid_json", f"The server could not parse the event as JSON: {exc}"[:200]) from None
    if not isinstance(obj, dict):
        raise RealtimeError("invalid_json", "An event must be a JSON object.")
    event_id = obj.get("event_id") if isinstance(obj.get("event_id"), str) else None
    kind = obj.get("type")
    err = None
    if kind is None:
        err = RealtimeError("missing_required_parameter", "Missing required parameter: 'type'.", param="type")
    elif kind not in CLIENT_EVENTS:
        err = RealtimeError("invalid_value", f"Invalid value: {str(kind)[:60]!r}. A transcription session takes "
                            f"{', '.join(repr(e) for e in CLIENT_EVENTS)}.", param="type")
    if err is not None:
        err.event_id = event_id
        raise err
    return ClientEvent(kind, event_id, obj)


def audio_of(event: ClientEvent) -> bytes:
    """The audio of an `input_audio_buffer.append`, decoded from base64."""
    audio = event.body.get("audio")
    if not isinstance(audio, str):
        raise RealtimeError("missing_required_parameter", "Missing required parameter: 'audio' "
                            "(base64-encoded audio bytes).", param="audio")
    try:
        return base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid("audio", "Invalid 'audio': it is not valid base64-encoded audio bytes.") from None


def commit_empty(buffered_ms: float) -> RealtimeError:
    return RealtimeError("input_audio_buffer_commit_empty",
                         f"Error committing input audio buffer: buffer too small. Expected at least "
                         f"{MIN_COMMIT_MS}ms of audio, but buffer only has {buffered_ms:.2f}ms of audio.")


# --- server events ---------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def server_event(kind: str, **fields: Any) -> dict[str, Any]:
    """Every server event has its own `event_id`."""
    return {"type": kind, "event_id": new_id("event"), **fields}


def error_event(code: str, message: str, *, param: str | None = None, type_: str = "invalid_request_error",
                client_event_id: str | None = None) -> dict[str, Any]:
    return server_event("error", error={"type": type_, "code": code, "message": message, "param": param,
                                        "event_id": client_event_id})


def user_audio_item(item_id: str, transcript: str | None = None) -> dict[str, Any]:
    """The conversation item a committed buffer becomes: a user message with one audio part."""
    return {"id": item_id, "object": "realtime.item", "type": "message", "status": "completed", "role": "user",
            "content": [{"type": "input_audio", "transcript": transcript}]}


class ItemText:
    """The deltas of one item: its stable text as it grows, then the rest at the final.

    The daemon's stable text only grows and its final text starts with it, so the
    deltas joined are exactly the final transcript.
    """

    def __init__(self) -> None:
        self.sent = ""

    def grow(self, stable: str) -> str:
        """The new stable characters ("" when nothing new, or if `stable` ever disagreed)."""
        if len(stable) <= len(self.sent) or not stable.startswith(self.sent):
            return ""
        delta, self.sent = stable[len(self.sent):], stable
        return delta

    def finish(self, final: str) -> tuple[str, bool]:
        """The last delta, and whether the deltas joined equal `final`."""
        if not final.startswith(self.sent):
            return "", False
        delta, self.sent = final[len(self.sent):], final
        return delta, True


# --- the handshake -----------------------------------------------------------------------------


def offered_subprotocols(header: str | None) -> list[str]:
    return [p.strip() for p in (header or "").split(",") if p.strip()]


def subprotocol_key(offered: list[str]) -> str | None:
    """The API key a browser sends as the subprotocol `openai-insecure-api-key.<KEY>`."""
    for p in offered:
        if p.startswith(KEY_SUBPROTOCOL):
            return p[len(KEY_SUBPROTOCOL):]
    return None


def chosen_subprotocol(offered: list[str]) -> str | None:
    """The one to echo: browsers fail a handshake that offered subprotocols and got none back.
    Never the key's own, unless nothing else was offered."""
    for wanted in (PLAIN_SUBPROTOCOL, BETA_SUBPROTOCOL):
        if wanted in offered:
            return wanted
    return offered[0] if offered else None
