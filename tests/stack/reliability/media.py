"""Hostile audio, made in memory: lying WAV headers and decompression bombs.

Nothing here touches the disk; every builder returns bytes.
"""

from __future__ import annotations

import struct

import numpy as np


def wav(pcm: bytes, *, rate: int = 16000, channels: int = 1, bits: int = 16, tag: int = 1,
        data_size: int | None = None) -> bytes:
    """A RIFF/WAVE file whose header says whatever it is told to."""
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, (rate * align) & 0xFFFFFFFF, align, bits)
    size = len(pcm) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size) + pcm
    return b"RIFF" + struct.pack("<I", min(len(body), 0xFFFFFFFF)) + body


def tone(seconds: float, rate: int = 16000) -> bytes:
    """16-bit mono PCM samples of a quiet tone (no header)."""
    n = int(seconds * rate)
    return (np.sin(np.arange(n) / 5) * 8000).astype("<i2").tobytes()


# --- FLAC by hand: a silent 65535-sample block is 14 bytes, so hours fit in a few KB ---------


def _crc8(data: bytes) -> int:
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _crc16(data: bytes) -> int:
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def _utf8_number(n: int) -> bytes:
    """FLAC's frame number: UTF-8's variable-length coding of an integer."""
    if n < 0x80:
        return bytes([n])
    if n < 0x800:
        return bytes([0xC0 | n >> 6, 0x80 | n & 0x3F])
    if n < 0x10000:
        return bytes([0xE0 | n >> 12, 0x80 | (n >> 6) & 0x3F, 0x80 | n & 0x3F])
    return bytes([0xF0 | n >> 18, 0x80 | (n >> 12) & 0x3F, 0x80 | (n >> 6) & 0x3F, 0x80 | n & 0x3F])


def silent_flac(seconds: float, block: int = 65535) -> bytes:
    """`seconds` of digital silence, 16 kHz mono 16-bit, as valid FLAC (CRCs and all).

    Each frame holds one CONSTANT subframe: ~14 bytes for 4 s of audio, so ten
    hours (1.15 GB once decoded to float32) is a ~130 KB file.
    """
    rate = 16000
    total = int(seconds * rate)
    frames = []
    for n in range((total + block - 1) // block):
        size = min(block, total - n * block)
        # sync + fixed blocking; block size "16-bit at end", 16 kHz; mono, 16 bits per sample
        header = bytes([0xFF, 0xF8, 0x75, 0x08]) + _utf8_number(n) + struct.pack(">H", size - 1)
        header += bytes([_crc8(header)])
        frame = header + b"\x00\x00\x00"  # CONSTANT subframe, value 0
        frames.append(frame + struct.pack(">H", _crc16(frame)))
    # STREAMINFO: block sizes, frame sizes (unknown), rate(20) channels-1(3) bits-1(5) samples(36), MD5
    packed = (rate << 44) | (0 << 41) | (15 << 36) | total
    info = struct.pack(">HH", block, block) + bytes(6) + packed.to_bytes(8, "big") + bytes(16)
    return b"fLaC" + bytes([0x80]) + len(info).to_bytes(3, "big") + info + b"".join(frames)


# --- uploads that carry a unique token, so a copy of them on disk can be found ---------------


def marked_wav(wav_bytes: bytes, token: bytes) -> bytes:
    """The same WAV with a LIST chunk holding `token` (decoders skip unknown chunks)."""
    assert wav_bytes[:4] == b"RIFF" and wav_bytes[8:12] == b"WAVE"
    chunk = b"LIST" + struct.pack("<I", len(token)) + token + (b"\0" if len(token) % 2 else b"")
    body = wav_bytes[12:]
    return b"RIFF" + struct.pack("<I", 4 + len(chunk) + len(body)) + b"WAVE" + chunk + body


def marked_mp3(mp3_bytes: bytes, token: bytes) -> bytes:
    """The same MP3 behind an ID3v2.3 tag whose PRIV frame holds `token`."""
    frame_data = b"whisperd-test\0" + token
    frame = b"PRIV" + struct.pack(">I", len(frame_data)) + b"\0\0" + frame_data
    size = len(frame)
    syncsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    return b"ID3\x03\x00\x00" + syncsafe + frame + mp3_bytes
