"""Decoding audio bytes in memory: every container, judged by content, and hostile input."""

from __future__ import annotations

import inspect
import io
import struct
import threading
from fractions import Fraction

import av
import numpy as np
import pytest

from testing.speech import FOX_FILES, LONG_FILE, SPANISH_FILE
from whisperd.core.errors import (
    AudioDecodeError,
    AudioEmpty,
    AudioTooLong,
    WhisperdError,
)
from whisperd.daemon import audio
from whisperd.daemon.audio import SAMPLE_RATE, decode_audio, probe_duration

FOX_WAV = FOX_FILES["wav"].read_bytes()


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """The fox clip as 16 kHz PCM: the source every other container was encoded from."""
    return decode_audio(FOX_WAV)


def envelope(samples: np.ndarray, hop: int = 800) -> np.ndarray:
    """RMS per 50 ms: the shape of the speech, which lossy codecs keep."""
    n = len(samples) // hop * hop
    return np.sqrt((samples[:n].reshape(-1, hop) ** 2).mean(axis=1))


def same_speech(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    return float(np.corrcoef(envelope(a[:n]), envelope(b[:n]))[0, 1])


def wav_bytes(samples: np.ndarray, rate: int, channels: int = 1, *, data_size: int | None = None) -> bytes:
    """A 16-bit PCM WAV file; `samples` is (frames, channels) or (frames,)."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * 2, channels * 2, 16)
    size = len(pcm) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size) + pcm
    return b"RIFF" + struct.pack("<I", min(len(body), 0xFFFFFFFF)) + body


def silent_opus(seconds: float) -> bytes:
    """Hours of silence in a few hundred KB: one encoded 120 ms Opus packet, muxed over and over."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=48000, options={"frame_duration": "120"})
        stream.layout = "mono"
        stream.bit_rate = 6000
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 5760), np.int16), format="s16", layout="mono")
        frame.sample_rate = 48000
        packets = []
        for i in range(4):
            frame.pts = i * 5760
            packets += stream.encode(frame)
        payload = bytes(packets[-1])
        for i in range(int(seconds / 0.12)):
            packet = av.Packet(payload)
            packet.stream = stream
            packet.pts = packet.dts = i * 5760
            packet.duration = 5760
            packet.time_base = Fraction(1, 48000)
            out.mux(packet)
    return buf.getvalue()


# --- every container the API accepts -------------------------------------------------


@pytest.mark.parametrize("kind", sorted(FOX_FILES))
def test_each_container_decodes_to_16k_mono_float32(kind, reference):
    samples = decode_audio(FOX_FILES[kind].read_bytes())
    assert samples.dtype == np.float32 and samples.ndim == 1 and samples.flags.c_contiguous
    assert abs(len(samples) - len(reference)) / SAMPLE_RATE <= 0.3
    assert np.abs(samples).max() <= 1.0 and np.sqrt(np.mean(samples**2)) > 0.02
    # The same speech at the same place (decoders drop the encoders' priming samples).
    assert same_speech(samples, reference) > 0.95


@pytest.mark.parametrize("path", [LONG_FILE, SPANISH_FILE], ids=lambda p: p.name)
def test_other_clips_decode(path):
    samples = decode_audio(path.read_bytes())
    expected = probe_duration(path.read_bytes())
    assert expected is not None and expected > 3
    assert abs(len(samples) / SAMPLE_RATE - expected) <= 0.3


def test_format_is_recognised_by_content_alone():
    # The API has no file name to go by, and takes any bytes-like object.
    assert list(inspect.signature(decode_audio).parameters) == ["data", "max_duration_s"]
    data = FOX_FILES["m4a"].read_bytes()
    first = decode_audio(data)
    for same in (bytearray(data), memoryview(data), memoryview(b"junk" + data)[4:]):
        assert np.array_equal(decode_audio(same), first)


def test_fast_wav_path_matches_ffmpeg(reference):
    from_ffmpeg = audio._decode_with_av(memoryview(FOX_WAV), None, None)
    assert len(from_ffmpeg) == len(reference)
    assert np.max(np.abs(from_ffmpeg - reference)) < 1e-6


def test_fast_wav_path_walks_chunks_like_ffmpeg():
    # A LIST chunk of odd size (padded) before fmt, an odd data size, a truncated data chunk.
    pcm = (np.sin(np.arange(16000) / 7) * 20000).astype("<i2").tobytes() + b"\x01"
    fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
    chunks = b"LIST" + struct.pack("<I", 5) + b"INFOx\x00" + b"fmt " + struct.pack("<I", 16) + fmt
    chunks += b"data" + struct.pack("<I", len(pcm) + 1000) + pcm
    data = b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks
    fast = decode_audio(data)
    assert audio._pcm16_mono_16k_wav_data(memoryview(data)) is not None
    assert len(fast) == 16000
    assert np.max(np.abs(fast - audio._decode_with_av(memoryview(data), None, None))) < 1e-6


def test_streamed_wav_without_a_data_size_goes_through_ffmpeg():
    data = wav_bytes(np.full(8000, 0.25), 16000, data_size=0xFFFFFFFF)
    assert audio._pcm16_mono_16k_wav_data(memoryview(data)) is None
    samples = decode_audio(data)
    assert len(samples) == 8000 and abs(samples.mean() - 0.25) < 1e-3


def test_stereo_44k_is_downmixed_and_resampled():
    t = np.arange(44100 * 2) / 44100
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    samples = decode_audio(wav_bytes(np.stack([tone, tone], axis=1), 44100, 2))
    assert abs(len(samples) - 2 * SAMPLE_RATE) <= 16
    # The downmix is the mean of the channels: same level, no +3 dB sum, no clipping.
    assert abs(np.abs(samples[1000:-1000]).max() - 0.5) < 0.02
    # Opposite channels cancel out.
    cancelled = decode_audio(wav_bytes(np.stack([tone, -tone], axis=1), 44100, 2))
    assert np.abs(cancelled).max() < 0.01


def tone_mp3(rate: int, layout: str, seconds: float = 1.0) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=rate)
        stream.layout = layout
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate)).astype(np.float32)
        planes = np.tile(tone, (2 if layout == "stereo" else 1, 1))
        for start in range(0, len(tone), 1152):
            frame = av.AudioFrame.from_ndarray(planes[:, start : start + 1152], format="fltp", layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buf.getvalue()


def test_rate_and_layout_may_change_mid_stream(reference):
    # Two MP3s back to back (22.05 kHz mono, then 44.1 kHz stereo): the decoder's
    # output changes shape halfway, and the packet at the seam does not decode.
    data = FOX_FILES["mp3"].read_bytes() + tone_mp3(44100, "stereo")
    samples = decode_audio(data)
    assert abs(len(samples) - len(reference) - SAMPLE_RATE) / SAMPLE_RATE <= 0.3
    assert same_speech(samples, reference) > 0.95


def test_video_file_with_no_audio_is_refused_by_name():
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as out:
        stream = out.add_stream("ffv1", rate=5)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        for i in range(3):
            frame = av.VideoFrame(16, 16, "yuv420p")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with pytest.raises(AudioDecodeError, match="no audio stream found"):
        decode_audio(buf.getvalue())


# --- probe ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(FOX_FILES))
def test_probe_duration_reads_headers(kind, reference):
    duration = probe_duration(FOX_FILES[kind].read_bytes())
    assert duration is not None and abs(duration - len(reference) / SAMPLE_RATE) <= 0.3


def test_probe_duration_of_non_audio_is_none():
    assert probe_duration(b"") is None
    assert probe_duration(b"plain text, not audio" * 20) is None


# --- hostile and broken input ---------------------------------------------------------


def test_empty_input_is_audio_empty():
    for empty in (b"", bytearray(), memoryview(b"")):
        with pytest.raises(AudioEmpty):
            decode_audio(empty)


def test_a_file_with_no_samples_is_audio_empty():
    with pytest.raises(AudioEmpty):
        decode_audio(wav_bytes(np.zeros(0), 16000))


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("size", [1, 64, 4096, 100_000])
def test_random_bytes_are_a_decode_error(seed, size):
    with pytest.raises(AudioDecodeError) as err:
        decode_audio(np.random.default_rng(seed).bytes(size))
    assert err.value.message.startswith("could not decode audio: ")


@pytest.mark.parametrize(
    "data",
    [
        b"hello, this is text and not audio\n" * 30,
        b'{"text": "json is not audio either"}',
        b"\x89PNG\r\n\x1a\n" + bytes(200),
        b"1\n00:00:01,000 --> 00:00:02,000\nsubtitles are not audio\n\n",
    ],
    ids=["text", "json", "png", "srt"],
)
def test_non_audio_is_a_decode_error_with_a_plain_message(data):
    with pytest.raises(AudioDecodeError) as err:
        decode_audio(data)
    message = err.value.message
    assert message.startswith("could not decode audio: ") and "Errno" not in message and "\n" not in message


@pytest.mark.parametrize(
    "data",
    [
        # FFmpeg's SDP demuxer would listen for RTP on UDP port 5004, forever.
        b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n",
        b"ffconcat version 1.0\nfile /etc/hostname\n",
        b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/hostname\n#EXT-X-ENDLIST\n",
    ],
    ids=["sdp", "ffconcat", "hls"],
)
def test_formats_that_open_other_files_or_sockets_are_refused(data):
    outcome: list[BaseException] = []

    def decode() -> None:
        try:
            decode_audio(data)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=decode, daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "the decoder hung: it is waiting on something outside the upload"
    assert len(outcome) == 1 and isinstance(outcome[0], AudioDecodeError)
    assert outcome[0].message == "could not decode audio: the data is not a recognised audio or video format"


@pytest.mark.parametrize("kind", sorted(FOX_FILES))
@pytest.mark.parametrize("keep", [0.3, 0.02])
def test_truncated_file_decodes_less_or_is_a_decode_error(kind, keep, reference):
    data = FOX_FILES[kind].read_bytes()
    try:
        samples = decode_audio(data[: int(len(data) * keep)])
    except (AudioDecodeError, AudioEmpty):
        return
    assert samples.dtype == np.float32 and len(samples) < len(reference)


@pytest.mark.parametrize("kind", sorted(FOX_FILES))
def test_a_broken_packet_is_skipped(kind, reference):
    data = bytearray(FOX_FILES[kind].read_bytes())
    middle = len(data) // 2
    data[middle : middle + 20] = np.random.default_rng(2).bytes(20)
    samples = decode_audio(bytes(data))
    # An Ogg page (up to a second) may be lost, not the rest of the file.
    assert len(samples) > 0.65 * len(reference)


def flac_in_matroska(good: int, garbage: int) -> bytes:
    """A valid Matroska/FLAC stream: `good` real packets of silence, then `garbage` random ones."""
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as out:
        stream = out.add_stream("flac", rate=16000)
        stream.layout = "mono"
        packets = []
        for i in range(max(good, 1) + 2):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 4608), np.int16), format="s16", layout="mono")
            frame.sample_rate = 16000
            frame.pts = i * 4608
            packets += stream.encode(frame)  # the first call gives the stream its header
        payloads = [bytes(p) for p in packets[:good]] + [rng.bytes(300) for _ in range(garbage)]
        for i, payload in enumerate(payloads):
            packet = av.Packet(payload)
            packet.stream = stream
            packet.pts = packet.dts = i * 4608
            packet.duration = 4608
            packet.time_base = Fraction(1, 16000)
            out.mux(packet)
    return buf.getvalue()


def test_a_file_of_corrupt_packets_is_a_decode_error():
    assert len(decode_audio(flac_in_matroska(good=3, garbage=0))) > 0
    with pytest.raises(AudioDecodeError, match="corrupt"):
        decode_audio(flac_in_matroska(good=0, garbage=40))
    # A scrap of sound among garbage is not a file with "a few broken packets".
    with pytest.raises(AudioDecodeError, match=r"38 of 4\d packets are unreadable"):
        decode_audio(flac_in_matroska(good=2, garbage=38))


# --- the duration limit ---------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(FOX_FILES))
def test_limit_applies_to_every_container(kind):
    data = FOX_FILES[kind].read_bytes()
    with pytest.raises(AudioTooLong, match="3 seconds"):
        decode_audio(data, max_duration_s=3)
    assert len(decode_audio(data, max_duration_s=5)) > 3 * SAMPLE_RATE


@pytest.mark.parametrize("rate, channels", [(16000, 1), (44100, 2)])
def test_wav_header_claiming_hours_decodes_what_is_there(rate, channels):
    one_second = np.zeros((rate, channels)) + 0.1
    data = wav_bytes(one_second, rate, channels, data_size=0xFFFFFFF0)  # ~6.7 h at 16 kHz
    try:
        samples = decode_audio(data, max_duration_s=60)
    except AudioTooLong:
        return
    assert abs(len(samples) - SAMPLE_RATE) <= 16


def test_long_silence_stops_at_the_limit(monkeypatch):
    data = silent_opus(20 * 60)
    assert len(data) < 500_000  # 20 minutes in a few hundred KB: a small decompression bomb
    counted = []
    check_length = audio._check_length
    monkeypatch.setattr(audio, "_check_length", lambda n, *limit: counted.append(n) or check_length(n, *limit))
    with pytest.raises(AudioTooLong, match="60 seconds"):
        decode_audio(data, max_duration_s=60)
    # Decoding stopped within one packet (120 ms) of the limit, not after 20 minutes.
    assert 60 * SAMPLE_RATE < max(counted) <= 60.2 * SAMPLE_RATE


def test_errors_cross_the_wire_with_their_codes():
    with pytest.raises(WhisperdError) as err:
        decode_audio(b"not audio" * 100)
    wire = WhisperdError.from_wire(err.value.to_wire())
    assert isinstance(wire, AudioDecodeError) and wire.code == "audio_decode_failed" and wire.param == "file"


def test_only_canonical_wav_counts_as_plain():
    # The daemon decodes these on its event loop; everything else goes to a decode thread.
    tone = (np.sin(np.arange(16000) / 5) * 8000).astype("<i2")
    assert audio.is_plain_wav(wav_bytes(tone, 16000))
    assert not audio.is_plain_wav(wav_bytes(tone, 44100))
    assert not audio.is_plain_wav(wav_bytes(np.repeat(tone, 2), 16000, channels=2))
    assert not audio.is_plain_wav(wav_bytes(tone, 16000, data_size=0xFFFFFFFF))
    assert not audio.is_plain_wav(FOX_FILES["mp3"].read_bytes())
    assert not audio.is_plain_wav(b"RIFF")
