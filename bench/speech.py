"""Speech for the benchmarks: short voice commands (espeak-ng when installed) and a long recording."""

from __future__ import annotations

import io
import shutil
import subprocess
import wave

import numpy as np

from bench.report import ROOT

COMMANDS = [
    "turn on the kitchen lights",
    "what is the weather tomorrow",
    "set a timer for ten minutes",
    "play some quiet music",
    "call my sister now",
    "add milk to the shopping list",
]
FIXTURES = ROOT / "tests" / "fixtures"


def wav_bytes(pcm: np.ndarray, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def commands() -> list[tuple[str, bytes]]:
    """(script, wav bytes) of 2-3 s commands; the fox fixture when espeak-ng is missing."""
    if shutil.which("espeak-ng") is None:
        return [((FIXTURES / "fox.txt").read_text().strip(), (FIXTURES / "fox.wav").read_bytes())]
    out = []
    for text in COMMANDS:
        wav = subprocess.run(["espeak-ng", "-s", "165", "--stdout", text], capture_output=True, check=True).stdout
        out.append((text, wav))
    return out


def long_recording(minimum_s: float = 80.0) -> tuple[str, bytes]:
    """The 32 s fixture repeated until it is at least `minimum_s` long, as a 16 kHz WAV."""
    from whisperd.daemon.audio import decode_audio

    pcm = decode_audio((FIXTURES / "long.mp3").read_bytes())
    text = (FIXTURES / "long.txt").read_text().strip()
    reps = int(np.ceil(minimum_s * 16000 / len(pcm)))
    return " ".join([text] * reps), wav_bytes(np.concatenate([pcm] * reps))


def duration_s(wav: bytes) -> float:
    from whisperd.daemon.audio import decode_audio

    return len(decode_audio(wav)) / 16000
