"""The daemon's settings (`[whisperd]` in the config file) and its frozen config."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from whisperd.core.constants import NO_SPEECH_THRESHOLD
from whisperd.core.settings import (
    DEFAULT_SOCKET,
    LOG_LEVELS,
    Setting,
    bounded,
    choice,
    parse_bool,
    parse_mode,
    parse_size,
)


def _default_cache_dir() -> str:
    # Under systemd, StateDirectory= hands us a writable place; otherwise XDG.
    if os.environ.get("STATE_DIRECTORY"):
        return os.environ["STATE_DIRECTORY"].split(":")[0]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "whisperd")


DAEMON_SETTINGS: tuple[Setting, ...] = (
    Setting("socket", DEFAULT_SOCKET, str, "Unix socket path to listen on"),
    Setting("socket_mode", 0o660, parse_mode, "socket file mode (octal)"),
    Setting("socket_group", "", str, "group that owns the socket (empty: the daemon's)"),
    Setting("model", "tiny.en", str, "model name, CTranslate2 directory or .pt checkpoint"),
    Setting("extra_models", "*", str,
            "other installed models requests may name, served by cold workers (comma-separated; '*' = all)"),
    Setting("engine", "auto", choice("auto", "faster-whisper", "openai-whisper", hidden=("null",)),  # null: bench/tests only
            "inference engine: auto (picks by the model's kind), faster-whisper or openai-whisper"),
    Setting("device", "auto", choice("auto", "cpu", "cuda"), "where to run the model"),
    Setting("compute_type", "auto", str, "precision: auto, float32, float16, int8, int8_float16..."),
    Setting("cpu_threads", 0, bounded(int, 0, 1024),
            "CPU threads for the hot worker, shared by its slots (0: all cores)"),
    Setting("hot_slots", 0, bounded(int, 0, 64),
            "requests the hot worker decodes at once on one copy of the model (0: auto - up to 4 on CPU "
            "with faster-whisper, 1 on CUDA and with openai-whisper)"),
    Setting("beam_size", 5, bounded(int, 1, 16), "default beam size"),
    Setting("no_speech_threshold", NO_SPEECH_THRESHOLD, bounded(float, 0.0, 1.0),
            "drop segments whose no-speech probability is above this"),
    Setting("vad_filter", False, parse_bool, "drop non-speech with faster-whisper's Silero VAD"),
    Setting("short_path", "on", choice("off", "on"),
            "decode audio under ~20 s on a shorter encoder context, guarded by a fallback to the 30 s path "
            "(docs/performance.md, section commands)"),
    Setting("max_audio_bytes", 64 << 20, parse_size, "largest audio file accepted on the socket"),
    Setting("max_audio_seconds", 4 * 3600.0, bounded(float, 1.0, 1e6), "longest audio accepted"),
    Setting("max_cold_workers", 2, bounded(int, 0, 64),
            "cold worker processes started when the hot worker is busy (0: hot worker only)"),
    Setting("worker_idle_timeout", 60.0, bounded(float, 1.0, 86400.0),
            "seconds an idle cold worker stays loaded (exits are staggered)"),
    Setting("long_audio_seconds", 30.0, bounded(float, 1.0, 86400.0),
            "audio longer than this goes to a cold worker, keeping the hot one for commands"),
    Setting("window_mode", "windows", choice("windows", "whole"),
            "a recording longer than one window: 'windows' (cut at pauses into windows of at most 30 s "
            "that every free lane takes) or 'whole' (one job on one lane, the path before windows)"),
    Setting("window_vad", "auto", choice("auto", "silero", "energy"),
            "what finds the pauses windows are cut at: Silero VAD (auto: when onnxruntime loads it) or energy"),
    Setting("decoded_audio_budget", 256 << 20, parse_size,
            "decoded audio (float32) that queued and running work may hold; past it requests are refused "
            "as overloaded"),
    Setting("worker_timeout", 300.0, bounded(float, 0.1, 86400.0),
            "seconds a cold worker may take per minute of audio (at least one minute's worth) before it is killed"),
    Setting("queue_size", 64, bounded(int, 1, 100000), "requests waiting beyond this are refused"),
    Setting("shutdown_grace", 30.0, bounded(float, 0.0, 3600.0),
            "seconds to finish in-flight work on SIGTERM"),
    Setting("cache_dir", "", str, "where converted/assembled models are kept (default: state dir or ~/.cache/whisperd)"),
    Setting("models_dir", "", str, "folder of extra models (<name>/model.bin or <name>.pt); "
            "'whisperctl models pull' installs into it (default: <cache_dir>/models)"),
    Setting("hf_cache_dir", "", str,
            "a Hugging Face hub cache to serve CTranslate2 models from, read-only (models--ORG--NAME/, as "
            "faster-whisper, speaches and wyoming-faster-whisper leave it); empty: off"),
    Setting("log_level", "info", choice(*LOG_LEVELS), "log level (debug also logs the text of every transcript)"),
    Setting("max_connections", 512, bounded(int, 1, 1 << 20),
            "socket connections open at once (lowered to fit the file limit); beyond it the oldest idle one "
            "is closed, or the new one refused when all are busy"),
    Setting("frame_timeout", 10.0, bounded(float, 0.1, 3600.0),
            "seconds a client may take to send a request header once begun; the audio gets this plus 1 s per MiB"),
    Setting("max_live_sessions", 8, bounded(int, 0, 1024),
            "live sessions (stream requests: Wyoming, Realtime, whisperctl listen) open at once; past it a new one "
            "is refused with overloaded; 0 turns live speech off"),
    Setting("live_idle_timeout", 30.0, bounded(float, 1.0, 3600.0),
            "seconds a live session may go without a frame from its client before it is closed"),
    Setting("live_max_seconds", 7200.0, bounded(float, 1.0, 86400.0),
            "the longest a live session may last, in seconds of audio and of wall-clock time"),
    Setting("live_partial_interval", 0.5, bounded(float, 0.1, 10.0),
            "seconds of new audio between two partial decodes of a live utterance (times the live sessions "
            "per hot slot, when there are more sessions than slots)"),
)


@dataclass(frozen=True)
class DaemonConfig:
    socket: str
    socket_mode: int
    socket_group: str
    model: str
    extra_models: str
    engine: str
    device: str
    compute_type: str
    cpu_threads: int
    hot_slots: int
    beam_size: int
    no_speech_threshold: float
    vad_filter: bool
    short_path: str
    max_audio_bytes: int
    max_audio_seconds: float
    max_cold_workers: int
    worker_idle_timeout: float
    long_audio_seconds: float
    window_mode: str
    window_vad: str
    decoded_audio_budget: int
    worker_timeout: float
    queue_size: int
    shutdown_grace: float
    cache_dir: str
    models_dir: str
    hf_cache_dir: str
    log_level: str
    max_connections: int
    frame_timeout: float
    max_live_sessions: int
    live_idle_timeout: float
    live_max_seconds: float
    live_partial_interval: float
    # Where each value came from ("default", "file:/etc/...", "env:WHISPERD_X", "cli").
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False, repr=False)
    config_file: str = ""

    @property
    def cache_path(self) -> Path:
        return Path(self.cache_dir or _default_cache_dir())

    @property
    def models_path(self) -> Path:
        return Path(self.models_dir) if self.models_dir else self.cache_path / "models"

    @property
    def hf_cache_path(self) -> Path | None:
        return Path(self.hf_cache_dir) if self.hf_cache_dir else None
