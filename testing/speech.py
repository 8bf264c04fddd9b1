"""Speech fixtures and how to judge a transcript of them.

The clips in `fixtures/` are synthetic speech (espeak-ng), made by
`fixtures/make_fixtures.py`, and one real recording (`jfk.wav`, see
`fixtures/SOURCES.md`); each clip's script is in the `.txt` beside it.
A small model hears synthetic speech imperfectly, so tests judge a transcript by
recall of the expected words (`word_recall(...) >= 0.8`), not by equality.
"""

from __future__ import annotations

import re
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"


def _script(name: str) -> str:
    return (FIXTURES / f"{name}.txt").read_text(encoding="utf-8").strip()


# "the quick brown fox jumps over the lazy dog", 3.8 s, English.
FOX_TEXT = _script("fox")
# Seven plain English sentences, 32.6 s (longer than one 30 s Whisper window).
LONG_TEXT = _script("long")
# "hola, me llamo Juan y vivo en Madrid. hoy hace mucho sol.", 5.4 s, Spanish.
SPANISH_TEXT = _script("spanish")

# A real human recording (fixtures/SOURCES.md): JFK, 11.0 s, 16 kHz mono WAV.
JFK_TEXT = _script("jfk")
JFK_FILE = FIXTURES / "jfk.wav"

# The fox clip in every container the API accepts; all decode to the same speech.
FOX_FILES = {
    "wav": FIXTURES / "fox.wav",  # 16-bit PCM, 16 kHz mono
    "flac": FIXTURES / "fox.flac",  # 22.05 kHz
    "mp3": FIXTURES / "fox.mp3",  # 22.05 kHz, 32 kbit/s
    "ogg": FIXTURES / "fox.ogg",  # Opus, 48 kHz
    "ogg-vorbis": FIXTURES / "fox.vorbis.ogg",  # Vorbis, 22.05 kHz
    "webm": FIXTURES / "fox.webm",  # Opus, 48 kHz
    "m4a": FIXTURES / "fox.m4a",  # AAC-LC, 22.05 kHz
}
LONG_FILE = FIXTURES / "long.mp3"  # 22.05 kHz, 32 kbit/s
SPANISH_FILE = FIXTURES / "spanish.flac"  # 22.05 kHz


def words(text: str) -> list[str]:
    """Lower-case words with punctuation removed ("Dog." -> "dog"; "don't" stays)."""
    text = text.lower().replace("\u2019", "'")
    return [w.strip("'") for w in re.findall(r"[\w']+", text) if w.strip("'")]


def word_recall(expected: str, got: str) -> float:
    """The share of expected words (counted with repeats) that appear in `got`."""
    want = words(expected)
    if not want:
        return 1.0
    have: dict[str, int] = {}
    for w in words(got):
        have[w] = have.get(w, 0) + 1
    hits = 0
    for w in want:
        if have.get(w, 0) > 0:
            have[w] -= 1
            hits += 1
    return hits / len(want)


def long_speech_wav(repeats: int) -> bytes:
    """LONG_FILE's speech `repeats` times over, as one valid 16 kHz mono WAV.

    For tests that need a request still running (or still queued behind one) whatever
    the machine's speed: 4 repeats are ~130 s of audio. (LONG_FILE's bytes concatenated
    are not one file: the daemon would decode only the first.)
    """
    import numpy as np

    from whisperd.daemon.audio import decode_audio

    return wav16(np.tile(decode_audio(LONG_FILE.read_bytes()), repeats))


def wav16(pcm) -> bytes:
    """16 kHz mono float samples (a numpy array) → a 16-bit PCM WAV file."""
    import io
    import wave

    import numpy as np

    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes())
    return out.getvalue()


def pcm_of_wav(path) -> tuple[bytes, int]:
    """A 16-bit mono WAV file's (PCM, sample rate), as a live client would send them (`path`: a
    path, or the file's bytes)."""
    import io
    import wave

    with wave.open(io.BytesIO(path) if isinstance(path, bytes) else str(path)) as w:
        assert (w.getsampwidth(), w.getnchannels()) == (2, 1), path
        return w.readframes(w.getnframes()), w.getframerate()


def espeak_wav(text: str, *, speed: int = 165) -> bytes:
    """`text` spoken by espeak-ng, as its WAV file (tests need espeak-ng: .ci/run installs it)."""
    import shutil
    import subprocess

    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    return subprocess.run(["espeak-ng", "-s", str(speed), "--stdout", text], capture_output=True, check=True).stdout


def espeak_pcm(text: str, *, speed: int = 165) -> tuple[bytes, int]:
    """`text` spoken by espeak-ng: (16-bit mono PCM, its rate - espeak's own 22,050 Hz)."""
    return pcm_of_wav(espeak_wav(text, speed=speed))
