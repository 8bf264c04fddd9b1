"""Audio file bytes -> 16 kHz mono float32 samples, the input every Whisper engine takes.

Decoding happens entirely in memory: PyAV (FFmpeg's libraries, linked in) reads
from an `io.BytesIO`. Nothing is written to a temporary file and no `ffmpeg`
process is started, because

- audio is private: a temp file can outlive a crash, land in a backup or be read
  by another user, and "never written to disk" is the promise whisperd makes;
- the request already holds the whole file in memory (frames are bounded), so a
  file would only add I/O and a cleanup path;
- a subprocess per request costs ~50 ms and another thing to kill on timeout.

The container and codec are recognised by content (FFmpeg's probe), never by a
file name or a content type — clients send both wrong or not at all. Only audio
and audio/video container demuxers are allowed (`_FORMAT_WHITELIST`): formats
that make FFmpeg open other files or URLs (HLS, concat) or listen on a socket
(SDP: an upload would wait for RTP packets forever) are refused.

Untrusted input is expected: every failure becomes a typed `WhisperdError` with a
short message a person can act on (`AudioEmpty`, `AudioDecodeError`,
`AudioTooLong`); a few broken packets in an otherwise good file are skipped.
With `max_duration_s`, decoding stops as soon as the limit is passed, which also
bounds the memory and time a small, highly compressed file can cost.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterable, Iterator

import av
import numpy as np

from whisperd.core.errors import (
    AudioDecodeError,
    AudioEmpty,
    AudioTooLong,
    WhisperdError,
)

SAMPLE_RATE = 16000
# Input rates outside this range are refused: real audio lives between telephone
# (8 kHz, 1 kHz leaves slack) and studio (768 kHz) rates.
MIN_RATE, MAX_RATE = 1000, 768_000

# Demuxers we accept (FFmpeg names; a demuxer called "mov,mp4,m4a,..." matches
# when any of its names is listed). Everything a browser, phone or recorder makes.
_FORMAT_WHITELIST = ",".join(
    [
        "wav", "w64", "flac", "mp3", "ogg", "matroska", "webm", "mov", "mp4",
        "aac", "loas", "aiff", "caf", "asf", "avi", "amr", "amrnb", "amrwb",
        "au", "voc", "mpeg", "mpegts", "flv", "ac3", "eac3", "dts", "truehd",
        "ape", "wv", "tta", "tak", "shn", "mpc", "mpc8", "gsm", "rm", "xwma",
    ]
)

# Give up early on a file whose packets all fail before any sound comes out,
# rather than walking a large corrupt file packet by packet.
_MAX_BAD_PACKETS_BEFORE_AUDIO = 64
# A file where most packets fail (and at least this many) is refused as corrupt.
_MIN_BAD_PACKETS_FOR_CORRUPT = 3

_DECODE_FAILED = "could not decode audio"


def decode_audio(
    data: bytes | bytearray | memoryview, *, max_duration_s: float | None = None
) -> np.ndarray:
    """Decode an audio (or video) file held in memory.

    Returns a 1-D `float32` array of mono samples at `SAMPLE_RATE` Hz in [-1, 1].

    Raises `AudioEmpty` for zero bytes or a file with no samples,
    `AudioDecodeError` for data that is not decodable audio, and `AudioTooLong`
    as soon as more than `max_duration_s` seconds have been decoded.
    """
    buf = _byte_view(data)
    if len(buf) == 0:
        raise AudioEmpty("the audio file is empty (0 bytes)")
    max_samples = None if max_duration_s is None else int(max_duration_s * SAMPLE_RATE)

    pcm = _pcm16_mono_16k_wav_data(buf)
    if pcm is not None:
        samples = _check_length(len(pcm) // 2, max_samples, max_duration_s)
        if samples == 0:
            raise AudioEmpty("the audio file contains no samples")
        return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / np.float32(32768.0)

    return _decode_with_av(buf, max_samples, max_duration_s)


def probe_duration(data: bytes | bytearray | memoryview) -> float | None:
    """The duration in seconds that the file's headers state, without decoding.

    A cheap estimate for scheduling: `None` when the headers do not say (a
    streamed webm, say) or the data cannot be opened. Headers can lie; only
    `decode_audio` knows for sure.
    """
    buf = _byte_view(data)
    if len(buf) == 0:
        return None
    pcm = _pcm16_mono_16k_wav_data(buf)
    if pcm is not None:
        return len(pcm) // 2 / SAMPLE_RATE
    try:
        with _open(buf) as container:
            stream = _audio_stream(container)
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            if container.duration is not None:
                return container.duration / av.time_base
    except Exception:
        return None
    return None


# --- the fast path: canonical 16-bit PCM WAV, already 16 kHz mono ------------------


def is_plain_wav(data: bytes | bytearray | memoryview) -> bool:
    """True when `decode_audio` needs no FFmpeg: a header walk and one array conversion."""
    return _pcm16_mono_16k_wav_data(_byte_view(data)) is not None


def _pcm16_mono_16k_wav_data(buf: memoryview) -> memoryview | None:
    """The sample bytes of a RIFF/WAVE file that is 16-bit PCM, mono, 16 kHz.

    Returns `None` for anything else (other rates, layouts, encodings, RF64,
    unknown data size), which then goes through FFmpeg. A data chunk that claims
    more bytes than the file holds (a truncated upload) yields what is there,
    as FFmpeg's WAV demuxer would.
    """
    if len(buf) < 12 or buf[0:4] != b"RIFF" or buf[8:12] != b"WAVE":
        return None
    pos, have_fmt = 12, False
    while pos + 8 <= len(buf):
        chunk_id = bytes(buf[pos : pos + 4])
        (size,) = struct.unpack_from("<I", buf, pos + 4)
        body = pos + 8
        if chunk_id == b"fmt ":
            if size < 16 or body + 16 > len(buf):
                return None
            tag, channels, rate, _byte_rate, align, bits = struct.unpack_from("<HHIIHH", buf, body)
            if (tag, channels, rate, align, bits) != (1, 1, SAMPLE_RATE, 2, 16):
                return None
            have_fmt = True
        elif chunk_id == b"data":
            # Streaming writers leave 0 or 0xFFFFFFFF here; FFmpeg knows those cases.
            if not have_fmt or size in (0, 0xFFFFFFFF):
                return None
            end = min(body + size, len(buf))
            return buf[body : body + (end - body) // 2 * 2]
        pos = body + size + (size & 1)  # chunks are word-aligned
    return None


# --- the general path: FFmpeg via PyAV -----------------------------------------------


def _decode_with_av(
    buf: memoryview, max_samples: int | None, max_duration_s: float | None
) -> np.ndarray:
    chunks: list[np.ndarray] = []
    try:
        for chunk in _av_chunks(buf, max_samples, max_duration_s):
            chunks.append(chunk)
    except WhisperdError:
        # A refused file (too long, a bomb) must not leave its decoded samples behind:
        # drop them and hand the freed heap back to the OS (a bomb can decode ~1 GB).
        chunks.clear()
        _return_memory()
        raise
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)


def stream_audio(
    data: bytes | bytearray | memoryview, *, max_duration_s: float | None = None
) -> Iterator[np.ndarray]:
    """`decode_audio`, as a stream: 16 kHz mono float32 chunks, each a copy the caller owns.

    Memory stays that of one FFmpeg frame (or `STREAM_CHUNK` samples of a plain WAV)
    whatever the file's length: a 4-hour upload is never one array. The same errors
    as `decode_audio`, raised when reached (a file that turns out mostly corrupt
    only at its end raises after its good chunks were yielded).
    """
    buf = _byte_view(data)
    if len(buf) == 0:
        raise AudioEmpty("the audio file is empty (0 bytes)")
    max_samples = None if max_duration_s is None else int(max_duration_s * SAMPLE_RATE)
    pcm = _pcm16_mono_16k_wav_data(buf)
    if pcm is None:
        yield from _av_chunks(buf, max_samples, max_duration_s)
        return
    n = _check_length(len(pcm) // 2, max_samples, max_duration_s)
    if n == 0:
        raise AudioEmpty("the audio file contains no samples")
    for start in range(0, n, STREAM_CHUNK):
        part = pcm[start * 2 : min(n, start + STREAM_CHUNK) * 2]
        yield np.frombuffer(part, dtype="<i2").astype(np.float32) / np.float32(32768.0)


# A plain WAV streams in chunks of this many samples (10 s).
STREAM_CHUNK = 10 * SAMPLE_RATE


def _return_memory() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _clean(chunk: np.ndarray) -> np.ndarray:
    chunk = chunk.astype(np.float32, copy=True)  # a copy we own, not a view into FFmpeg's frame
    # Lossy decoders overshoot full scale a little; a corrupt packet can yield NaN.
    np.nan_to_num(chunk, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
    np.clip(chunk, -1.0, 1.0, out=chunk)
    return chunk


def _av_chunks(buf: memoryview, max_samples: int | None, max_duration_s: float | None) -> Iterator[np.ndarray]:
    try:
        container = _open(buf)
    except Exception as exc:
        raise AudioDecodeError(
            f"{_DECODE_FAILED}: the data is not a recognised audio or video format"
        ) from exc

    total = 0
    good_packets = bad_packets = 0
    broken_at_end = False

    def collect(frames: Iterable[av.AudioFrame]) -> Iterator[np.ndarray]:
        nonlocal total
        for out in frames:
            chunk = out.to_ndarray().reshape(-1)
            if chunk.size:
                total = _check_length(total + chunk.size, max_samples, max_duration_s)
                yield _clean(chunk)

    with container:
        stream = _audio_stream(container)
        if stream.codec_context is None:
            raise AudioDecodeError(f"{_DECODE_FAILED}: the audio codec is not supported")
        resampler, shape = _resampler(), None
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except Exception:
                    bad_packets += 1  # skip a corrupt packet; the next one may be fine
                    if total == 0 and bad_packets >= _MAX_BAD_PACKETS_BEFORE_AUDIO:
                        break
                    continue
                good_packets += packet.size > 0  # not the flush packet at the end
                for frame in frames:
                    frame_shape = (frame.format.name, frame.layout.name, frame.sample_rate)
                    if frame_shape != shape:
                        if not MIN_RATE <= frame.sample_rate <= MAX_RATE:
                            # A header claiming 1 Hz would turn a few KB into hours of audio.
                            raise AudioDecodeError(
                                f"{_DECODE_FAILED}: a sample rate of {frame.sample_rate} Hz is not audio "
                                f"(expected {MIN_RATE}-{MAX_RATE} Hz)"
                            )
                        # Rate, layout or sample format changed mid-stream (chained
                        # Ogg, some MP3s): finish the old resampler, start a new one.
                        if shape is not None:
                            yield from collect(resampler.resample(None))
                            resampler = _resampler()
                        shape = frame_shape
                    frame.pts = None  # timestamps of broken files only confuse the filter
                    yield from collect(resampler.resample(frame))
        except WhisperdError:
            raise
        except Exception:
            # The container breaks off (a truncated upload): keep what decoded.
            broken_at_end = True
        try:
            yield from collect(resampler.resample(None))
        except WhisperdError:
            raise
        except Exception:
            broken_at_end = True

    if total == 0:
        if bad_packets or broken_at_end:
            raise AudioDecodeError(f"{_DECODE_FAILED}: the audio data is corrupt")
        raise AudioEmpty("the audio file contains no samples")
    if bad_packets > good_packets and bad_packets >= _MIN_BAD_PACKETS_FOR_CORRUPT:
        # A few bad packets are skipped; a file that is mostly garbage is not audio,
        # whatever scraps of noise it decodes to.
        raise AudioDecodeError(
            f"{_DECODE_FAILED}: the audio data is corrupt "
            f"({bad_packets} of {bad_packets + good_packets} packets are unreadable)"
        )


def _open(buf: memoryview) -> av.container.InputContainer:
    return av.open(
        io.BytesIO(buf),
        mode="r",
        metadata_errors="ignore",
        container_options={"format_whitelist": _FORMAT_WHITELIST},
    )


def _audio_stream(container: av.container.InputContainer) -> av.audio.stream.AudioStream:
    stream = container.streams.best("audio")
    if stream is None:
        if container.streams.audio:
            return container.streams.audio[0]
        raise AudioDecodeError(f"{_DECODE_FAILED}: no audio stream found")
    return stream


def _resampler() -> av.AudioResampler:
    # rematrix_maxval=1 normalises the downmix (stereo -> mono is the mean of the
    # channels, as `ffmpeg -ac 1` to s16 gives openai-whisper) instead of summing
    # at +3 dB and clipping.
    return av.AudioResampler(
        format="flt", layout="mono", rate=SAMPLE_RATE, options={"rematrix_maxval": "1.0"}
    )


def _check_length(samples: int, max_samples: int | None, max_duration_s: float | None) -> int:
    if max_samples is not None and samples > max_samples:
        raise AudioTooLong(f"the audio is longer than the limit of {max_duration_s:g} seconds")
    return samples


def _byte_view(data: bytes | bytearray | memoryview) -> memoryview:
    view = memoryview(data)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    return view
