"""Reading and validating an audio request: multipart (OpenAI's shape) or JSON.

Bodies are streamed, never read whole before their size is known to be within
the limit; a too-large upload is refused as soon as the limit is passed.
Chunked (length-less) uploads are read the same way. Every byte of the body -
file, text fields, part headers - counts against one total (`body_limit`) and
against the shim's upload budget, and the number of parts and of repeats of one
field name is capped, so no shape of form holds more than the limit.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import BodyPartReader, hdrs, multipart, web
from aiohttp.multipart import content_disposition_filename

from shim.budget import Lease
from shim.errors import HTTPError
from whisperd.core import chunking as chunking_rules
from whisperd.core.chunking import Chunking
from whisperd.core.errors import WhisperdError
from whisperd.core.formats import check_format
from whisperd.core.languages import normalize_language
from whisperd.core.protocol import MAX_MODEL_NAME, MAX_PROMPT

TEXT_FIELD_LIMIT = 64 * 1024  # any non-file field; a prompt is far smaller
GRANULARITIES = ("word", "segment")
INCLUDES = ("logprobs",)
CHUNKING_PART = "chunking_strategy["  # the SDKs flatten the object: chunking_strategy[threshold]=0.4
# OpenAI's form has under a dozen fields; the repeatable ones (timestamp_granularities[],
# include[]) have two or three values. Far above any client, far below harm.
MAX_PARTS = 64
MAX_REPEATS = 8


@dataclass
class AudioForm:
    audio: bytes = b""
    filename: str = ""
    model: str | None = None
    language: str | None = None
    prompt: str | None = None
    response_format: str = "json"
    temperature: float = 0.0
    granularities: set[str] = field(default_factory=set)  # a set: repeating a value holds nothing more
    stream: bool = False
    chunking: Chunking | None = None
    include: list[str] = field(default_factory=list)
    # chunking_strategy[key] fields as they arrive; `finish` reads them as one object.
    chunking_parts: dict[str, object] = field(default_factory=dict)

    @property
    def words(self) -> bool:
        return "word" in self.granularities

    @property
    def logprobs(self) -> bool:
        return "logprobs" in self.include


def _too_large(limit: int) -> HTTPError:
    return HTTPError(
        "audio_too_large",
        f"the upload is larger than the limit of {limit} bytes ({limit / (1 << 20):.0f} MiB)",
        param="file",
    )


def _parse_bool(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "1", "yes", "on"):
        return True
    if v in ("false", "0", "no", "off", ""):
        return False
    raise HTTPError("invalid_parameter", f"{name} must be true or false, got {value[:40]!r}", param=name)


def _parse_temperature(value: str) -> float:
    try:
        t = float(value)
    except ValueError:
        raise HTTPError("invalid_parameter", f"temperature must be a number, got {value[:40]!r}",
                        param="temperature") from None
    if not 0.0 <= t <= 1.0:  # also refuses nan
        raise HTTPError("invalid_parameter", "temperature must be between 0 and 1", param="temperature")
    return t


def apply_field(form: AudioForm, name: str, value: str, *, translate: bool) -> None:
    """Validate one text field into `form`; unknown fields are ignored, as OpenAI does."""
    value = value.strip()
    if name == "model":
        # The daemon's own limits, checked here so the refusal is a 400, not a lost connection.
        if len(value) > MAX_MODEL_NAME:
            raise HTTPError("invalid_parameter", f"model name is longer than {MAX_MODEL_NAME} characters",
                            param="model")
        form.model = value or None
    elif name == "language" and not translate:
        form.language = normalize_language(value) if value else None
    elif name == "prompt":
        if len(value) > MAX_PROMPT:
            raise HTTPError("invalid_parameter", f"prompt is longer than {MAX_PROMPT} characters",
                            param="prompt")
        form.prompt = value or None
    elif name == "response_format":
        form.response_format = check_format(value or "json")
    elif name == "temperature":
        form.temperature = _parse_temperature(value) if value else 0.0
    elif name in ("timestamp_granularities[]", "timestamp_granularities") and not translate:
        for g in value.replace(",", " ").split():
            if g not in GRANULARITIES:
                raise HTTPError("invalid_parameter",
                                f"timestamp_granularities must be 'word' or 'segment', got {g[:40]!r}",
                                param="timestamp_granularities")
            form.granularities.add(g)
    elif name == "stream":
        form.stream = _parse_bool("stream", value)
    elif name == "chunking_strategy":
        form.chunking = chunking_rules.from_openai(value)  # "auto" or the object as JSON text
    elif name.startswith(CHUNKING_PART) and name.endswith("]"):
        form.chunking_parts[name[len(CHUNKING_PART):-1]] = chunking_rules.form_value(value)
    elif name in ("include[]", "include"):
        for item in value.replace(",", " ").split():
            if item not in INCLUDES:
                raise HTTPError("invalid_parameter", f"include must be 'logprobs', got {item[:40]!r}",
                                param="include")
            form.include.append(item)


def finish(form: AudioForm) -> AudioForm:
    """What only the whole form can tell: fields that depend on each other, whatever their order."""
    if form.chunking_parts:
        if form.chunking is not None:
            raise HTTPError("invalid_parameter", "chunking_strategy is given twice (as a value and as "
                            "chunking_strategy[...] fields)", param="chunking_strategy")
        form.chunking = chunking_rules.from_openai(form.chunking_parts)
    if form.logprobs and form.response_format != "json":
        # OpenAI returns logprobs with json only; a client asking for them elsewhere would lose them.
        raise HTTPError("invalid_parameter", "include[]=logprobs needs response_format 'json', "
                        f"got {form.response_format!r}", param="include")
    return form


class FieldCounter:
    """Caps the number of fields and of repeats of one name (multipart parts, JSON keys and list items)."""

    def __init__(self) -> None:
        self.total = 0
        self.by_name: dict[str, int] = {}

    def count(self, name: str) -> None:
        self.total += 1
        if self.total > MAX_PARTS:
            raise HTTPError("invalid_request", f"the form has more than {MAX_PARTS} fields")
        seen = self.by_name[name] = self.by_name.get(name, 0) + 1
        if seen > MAX_REPEATS:
            raise HTTPError("invalid_parameter", f"field {name[:40]!r} is repeated more than {MAX_REPEATS} times",
                            param=name[:40] or None)


def _json_body_limit(limit: int) -> int:
    return limit * 4 // 3 + 4 + TEXT_FIELD_LIMIT  # base64 is a third larger than the audio


def cache_aiohttp_disposition_parser() -> None:
    """Make aiohttp's own Content-Disposition parsing a cache lookup.

    `MultipartReader.next()` parses the first part's header itself on every
    request (a `_charset_` check), and aiohttp 3.x's parser rebuilds an escaped
    128-character regex class on each call: 20-25 % of the shim's CPU at the
    framework's ceiling (profiled, docs/performance.md). The parse is a pure
    function of the header, so a bounded cache keyed by it changes nothing else;
    each caller gets its own copy of the params.
    """
    original = multipart.parse_content_disposition
    if hasattr(original, "uncached"):
        return
    cached = functools.lru_cache(maxsize=256)(original)

    def parse(header: str | None) -> tuple[str | None, dict[str, str]]:
        disptype, params = cached(header)
        return disptype, dict(params)

    parse.uncached = original  # type: ignore[attr-defined]
    multipart.parse_content_disposition = parse


def _disposition(header: str | None) -> tuple[str, str]:
    """(name, filename) of a part from one parse: aiohttp's `part.name` and
    `part.filename` each parse the header again (~0.1 ms apiece uncached, profiled).
    Goes through the module attribute, so the cache above serves it too."""
    _, params = multipart.parse_content_disposition(header)
    return (content_disposition_filename(params, "name") or "",
            content_disposition_filename(params, "filename") or "")


async def read_form(request: web.Request, limit: int, *, translate: bool, lease: Lease | None = None) -> AudioForm:
    """The validated form; the body bytes received are held in `lease` as they arrive."""
    ctype = request.content_type
    body_limit = _json_body_limit(limit) if ctype == "application/json" else limit + TEXT_FIELD_LIMIT
    if request.content_length is not None and request.content_length > body_limit:
        raise _too_large(limit)  # refused before reading a byte of it

    def hold() -> None:
        # Counted from what reached the shim (`total_bytes`), not from what the parser handed
        # over: text parts, part headers and boundaries count too, and a chunked body (no
        # Content-Length) stops here at the limit.
        received = request.content.total_bytes
        if received > body_limit:
            raise _too_large(limit)
        if lease is not None:
            lease.cover(received)
    if ctype == "application/json":
        return await _read_json(request, limit, translate=translate, hold=hold)
    if ctype != "multipart/form-data":
        raise HTTPError("invalid_request", "send multipart/form-data with a 'file' field "
                        f"(got Content-Type {ctype or 'none'!r})")
    form = AudioForm()
    fields = FieldCounter()
    seen_file = False
    try:
        reader = await request.multipart()
        while True:
            part = await reader.next()
            hold()  # the part's headers are in
            if part is None:
                break
            name, filename = _disposition(part.headers.get(hdrs.CONTENT_DISPOSITION))
            fields.count(name)
            if not isinstance(part, BodyPartReader):
                continue  # a nested multipart: not something OpenAI clients send
            if name == "file":
                if seen_file:
                    raise HTTPError("invalid_parameter", "more than one 'file' field", param="file")
                seen_file = True
                form.filename = filename
                form.audio = await _read_limited(part, limit, _too_large(limit), hold)
            else:
                raw = await _read_limited(
                    part, TEXT_FIELD_LIMIT,
                    HTTPError("invalid_parameter", f"field {name[:40]!r} is too long", param=name[:40] or None),
                    hold,
                )
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise HTTPError("invalid_parameter", f"field {name[:40]!r} is not UTF-8 text",
                                    param=name[:40] or None) from None
                apply_field(form, name, text, translate=translate)
    except WhisperdError:  # a field's own validation error (HTTPError, InvalidParameter)
        raise
    except (ValueError, AssertionError, RuntimeError) as exc:
        # aiohttp's multipart parser signals broken bodies with these.
        raise HTTPError("invalid_request", f"malformed multipart body: {exc}"[:200]) from None
    except (ConnectionError, EOFError):
        raise
    except Exception as exc:  # e.g. aiohttp's BadContentDispositionHeader, an incomplete body
        raise HTTPError("invalid_request", f"malformed multipart body: {type(exc).__name__}: {exc}"[:200]) from None
    if not seen_file:
        raise HTTPError("invalid_request", "missing the 'file' field with the audio", param="file")
    return finish(form)


async def _read_limited(part, limit: int, error: HTTPError, hold: Callable[[], None] | None = None) -> bytes:
    chunks = bytearray()
    while True:
        chunk = await part.read_chunk(256 * 1024)
        if not chunk:
            return bytes(chunks)
        if len(chunks) + len(chunk) > limit:
            raise error
        if hold is not None:
            hold()
        chunks += chunk


async def _read_json(request: web.Request, limit: int, *, translate: bool,
                     hold: Callable[[], None] | None = None) -> AudioForm:
    """Open-WebUI's JSON mode: `{"model", "language"?, "input_audio": {"data": b64, "format"}}`."""
    max_body = _json_body_limit(limit)
    body = bytearray()
    async for chunk in request.content.iter_chunked(256 * 1024):
        body += chunk
        if len(body) > max_body:
            raise _too_large(limit)
        if hold is not None:
            hold()
    try:
        obj = json.loads(body)
    except ValueError:
        raise HTTPError("invalid_request", "the JSON body is not valid JSON") from None
    if not isinstance(obj, dict):
        raise HTTPError("invalid_request", "the JSON body must be an object")
    audio = obj.get("input_audio") or obj.get("file")
    data = audio.get("data") if isinstance(audio, dict) else audio
    if not isinstance(data, str):
        raise HTTPError("invalid_request", "missing 'input_audio.data' (base64 audio)", param="input_audio")
    form = AudioForm()
    try:
        form.audio = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPError("invalid_parameter", "input_audio.data is not valid base64", param="input_audio") from None
    if len(form.audio) > limit:
        raise _too_large(limit)
    fields = FieldCounter()
    for key, value in obj.items():
        if key in ("input_audio", "file") or value is None:
            continue
        if isinstance(value, list):
            for item in value:
                fields.count(key)
                apply_field(form, key, str(item), translate=translate)
        elif isinstance(value, dict):  # chunking_strategy's object, as the multipart field's JSON text
            apply_field(form, key, json.dumps(value), translate=translate)
        else:
            fields.count(key)
            text = str(value).lower() if isinstance(value, bool) else str(value)
            apply_field(form, key, text, translate=translate)
    return finish(form)
