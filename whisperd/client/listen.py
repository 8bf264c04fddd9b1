"""`whisperctl listen`: live words from the microphone or a file, as they are said.

    whisperctl listen                    the microphone (parec, else arecord), until Ctrl-C
    whisperctl listen talk.wav --pace    a file, sent as fast as it would be spoken
    whisperctl listen - --rate 8000      raw 16-bit mono PCM on stdin

On a terminal the utterance being spoken is one line that rewrites itself: the
words that will not change, then the others dimmed; when it ends, its final text
stays on its own line. Elsewhere (a pipe, a file) only the final lines are
printed, or every event as a JSON line with `--json`. Audio other than WAV or raw
PCM goes through `ffmpeg` when it is installed. Stdlib only, like the rest of
the client: nothing here decodes audio itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import time
import wave
from dataclasses import asdict
from typing import AsyncIterator

from whisperd.client.live import LiveStream
from whisperd.client.pcm import average_channels
from whisperd.core.live import LIVE_VAD, Final, Partial, SpeechStarted, SpeechStopped

RATE = 16_000
CHUNK_SECONDS = 0.064  # 1,024 samples at 16 kHz: what a microphone sends at a time


class ListenError(Exception):
    """The audio source cannot be used; the message says why and what to do."""


def microphone_command(source: str) -> list[str]:
    """The recorder to run for the microphone: raw 16 kHz 16-bit mono PCM on its stdout."""
    recorders = {
        "parec": ["parec", "--format=s16le", f"--rate={RATE}", "--channels=1", "--raw"],
        "arecord": ["arecord", "-q", "-f", "S16_LE", "-r", str(RATE), "-c", "1", "-t", "raw"],
    }
    names = [source] if source != "auto" else ["parec", "arecord"]
    for name in names:
        if shutil.which(name):
            return recorders[name]
    raise ListenError("no microphone recorder found: install pulseaudio-utils (parec) or alsa-utils "
                      "(arecord), or give a FILE")


def file_chunks(path: str, rate: int | None) -> tuple[int, AsyncIterator[bytes]]:
    """(sample rate, chunks of 16-bit mono PCM) of a WAV file, raw PCM (`-`, or --rate), or via ffmpeg."""
    if path == "-" or rate is not None:
        stream = sys.stdin.buffer if path == "-" else open(path, "rb")
        return rate or RATE, _read_chunks(stream, rate or RATE)
    try:
        w = wave.open(path, "rb")
    except FileNotFoundError:
        raise ListenError(f"cannot read {path}: no such file") from None
    except (wave.Error, EOFError):
        if shutil.which("ffmpeg") is None:
            raise ListenError(f"{path} is not a 16-bit WAV file: convert it (ffmpeg -i {path} -ac 1 "
                              "-ar 16000 out.wav), or install ffmpeg") from None
        proc = subprocess.Popen(["ffmpeg", "-loglevel", "error", "-i", path, "-f", "s16le", "-ac", "1",
                                 "-ar", str(RATE), "-"], stdout=subprocess.PIPE)
        return RATE, _read_chunks(proc.stdout, RATE)
    if w.getsampwidth() != 2:
        raise ListenError(f"{path} has {8 * w.getsampwidth()}-bit samples; 16-bit PCM is needed")

    async def chunks() -> AsyncIterator[bytes]:
        with w:
            step = int(w.getframerate() * CHUNK_SECONDS)
            while frames := w.readframes(step):
                yield average_channels(frames, w.getnchannels())

    return w.getframerate(), chunks()


async def _read_chunks(stream, rate: int) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    step = int(rate * CHUNK_SECONDS) * 2
    while data := await loop.run_in_executor(None, stream.read, step):
        yield data


class Printer:
    """Partial lines rewritten in place on a terminal; finals kept; or JSON lines."""

    def __init__(self, out=sys.stdout, *, as_json: bool = False) -> None:
        self.out = out
        self.json = as_json
        self.tty = out.isatty() and not as_json
        self.finals: list[str] = []

    def event(self, event) -> None:
        if self.json:
            kind = {Partial: "partial", Final: "final", SpeechStarted: "speech_started",
                    SpeechStopped: "speech_stopped"}.get(type(event), type(event).__name__)
            self.out.write(json.dumps({"type": kind, **asdict(event)}, ensure_ascii=False) + "\n")
        elif isinstance(event, Partial) and self.tty:
            stable, rest = event.text[: event.stable], event.text[event.stable:]
            self.out.write(f"\r\033[K{stable}\033[2m{rest}\033[0m")
        elif isinstance(event, Final):
            self.finals.append(event.text)
            if self.tty:
                self.out.write("\r\033[K")
            if event.text:
                self.out.write(event.text + "\n")
        if isinstance(event, Final) or self.json or self.tty:
            self.out.flush()


async def listen(args: argparse.Namespace) -> int:
    recorder = None
    if args.file is None:
        recorder = subprocess.Popen(microphone_command(args.source), stdout=subprocess.PIPE)
        rate, chunks = RATE, _read_chunks(recorder.stdout, RATE)
        pace = False  # a microphone is its own clock
        if sys.stderr.isatty():
            print("listening… (Ctrl-C to stop)", file=sys.stderr, flush=True)
    else:
        rate, chunks = file_chunks(args.file, args.rate)
        pace = args.pace
    printer = Printer(as_json=args.json)
    live = await LiveStream.open(args.socket, model=args.model, language=args.language, prompt=args.prompt,
                                 sample_rate=rate, vad=None if args.no_vad else LIVE_VAD)

    async def show() -> None:
        async for event in live:
            printer.event(event)

    shown = asyncio.ensure_future(show())
    try:
        start, sent = time.monotonic(), 0
        async for data in chunks:
            await live.send_audio(data)
            sent += len(data) // 2
            if pace and (ahead := sent / rate - (time.monotonic() - start)) > 0:
                await asyncio.sleep(ahead)
            if shown.done():
                break  # the stream ended under us: its error is raised below
        await live.end()
        await shown
    except (KeyboardInterrupt, asyncio.CancelledError):
        await live.end()
        await asyncio.wait_for(shown, 30)
    finally:
        if recorder is not None:
            recorder.terminate()
            recorder.wait()
        await live.close()
    if shown.done() and not shown.cancelled() and shown.exception() is not None:
        raise shown.exception()
    return 0


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("listen", help="live words from the microphone or a file, as they are said",
                       formatter_class=argparse.RawDescriptionHelpFormatter, description=__doc__.split("\n\n")[1])
    p.add_argument("file", metavar="FILE", nargs="?",
                   help="a WAV file (other formats through ffmpeg), '-' for raw 16-bit PCM on stdin; "
                        "default: the microphone")
    p.add_argument("--pace", action="store_true", help="send a file no faster than it would be spoken")
    p.add_argument("--rate", type=int, default=None, help="sample rate of raw PCM (FILE or '-'); default 16000")
    p.add_argument("--source", choices=("auto", "parec", "arecord"), default="auto",
                   help="the microphone recorder (default: parec, else arecord)")
    p.add_argument("--language", "-l", help="spoken language, e.g. en (default: detect)")
    p.add_argument("--model", "-m", help="model to use (default: the daemon's)")
    p.add_argument("--prompt", help="text to steer spelling and style")
    p.add_argument("--no-vad", action="store_true",
                   help="one utterance until the end, instead of one per pause (server VAD)")
    p.add_argument("--json", action="store_true", help="print every event as a JSON line")
    return p


def cmd_listen(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(listen(args))
    except ListenError as exc:
        print(f"whisperctl: error: {exc}", file=sys.stderr, flush=True)
        return 4 if args.file else 3
    except FileNotFoundError as exc:
        print(f"whisperctl: error: cannot read {exc.filename}: no such file", file=sys.stderr, flush=True)
        return 4

