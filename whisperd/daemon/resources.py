"""What the machine has left: free memory and VRAM, a process's resident size, and
what a cold worker for a model is expected to take.

Probes and estimates only, read by the pool when a cold start is possible; the
decision itself is the policy's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from whisperd.engines.base import ModelInfo


def mem_available_mb() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("inf")


def free_vram_mb() -> float:
    """Free memory on the current CUDA device (workers there hold their model in VRAM).

    Not exercised in CI: these machines have no GPU.
    """
    try:
        import torch

        free, _total = torch.cuda.mem_get_info()
        return free / (1 << 20)
    except Exception:  # no torch CUDA build: do not block spawning on a guess
        return mem_available_mb()


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# Reading /proc/meminfo (or asking CUDA) on every event cost the pool time at its
# ceiling; the figure moves slowly, so once a second is enough.
FREE_MEMORY_TTL_S = 1.0


class Resources:
    """What a new cold worker would cost and what the machine has left for one."""

    def __init__(self, device: str, models: Mapping[str, "ModelInfo"], compute_type: str = "float32") -> None:
        self.device = device  # "cuda": workers hold their model in VRAM
        self.models = models  # the pool's own mapping: a rescan's new models are seen here
        self.compute_type = compute_type  # what a cold worker loads its weights as (the hot engine's)
        self._measured_mb: dict[str, float] = {}  # resident size of a ready worker, by model
        self._guessed_mb: dict[str, float] = {}
        self._free_mb, self._free_at = 0.0, float("-inf")

    def free_mb(self, now: float) -> float:
        """Free VRAM (on CUDA) or MemAvailable, read at most once a second."""
        if now - self._free_at > FREE_MEMORY_TTL_S:
            self._free_mb = free_vram_mb() if self.device == "cuda" else mem_available_mb()
            self._free_at = now
        return self._free_mb

    def worker_mb(self, model: str) -> float:
        """A worker's resident size: measured once one ran, else estimated from the weights."""
        if model in self._measured_mb:
            return self._measured_mb[model]
        if model not in self._guessed_mb:
            self._guessed_mb[model] = guess_worker_mb(self.models.get(model), self.compute_type)
        return self._guessed_mb[model]

    def forget(self, model: str) -> None:
        """`model` was removed or replaced on disk: its figures say nothing about what comes next."""
        self._measured_mb.pop(model, None)
        self._guessed_mb.pop(model, None)

    def measured(self, model: str, pid: int | None) -> None:
        """A worker for `model` is ready as process `pid`: remember the largest seen."""
        if pid:
            self._measured_mb[model] = max(self._measured_mb.get(model, 0.0), rss_mb(pid))


# A cold worker's resident size, measured with faster-whisper on CPU after one transcription
# (docs/models.md, "Memory"): tiny.en 162 MB int8 / 271 MB float32, base 208 / 423 MB, from
# 72 and 139 MB of float16 weights on disk. That is ~110 MB of runtime (the interpreter,
# numpy, CTranslate2, forked from the fork server) plus the weights as the compute type holds
# them, plus a tenth for the activations.
RUNTIME_MB = 120.0
ACTIVATIONS = 1.1
# Bytes one weight takes in memory, by compute type. CTranslate2 keeps what it does not
# quantize (embeddings, norms, biases) in float32; `QUANTIZED_SHARE` of a Whisper model's
# weights are the linear layers that int8 does shrink (more in a large model, less in tiny).
BYTES_PER_WEIGHT = {"float32": 4.0, "int16": 2.0, "float16": 2.0, "bfloat16": 2.0,
                    "int8": 1.0, "int8_float32": 1.0, "int8_float16": 1.0, "int8_bfloat16": 1.0}
QUANTIZED_SHARE = 0.8
# The hub's CTranslate2 Whisper conversions (and the bundled ones) are float16 on disk.
DISK_BYTES_PER_WEIGHT = 2.0
UNSEEN_MODEL_MB = 1000.0  # nothing known about it: about a small model's worker


def estimate_worker_mb(weights_mb: float, compute_type: str) -> float:
    """A cold worker's resident size before one ever ran: the runtime plus the weights as
    `compute_type` holds them, from their float16 size on disk (`weights_mb`).

    >>> round(estimate_worker_mb(72, "int8"))        # tiny.en on a CPU: measured 162 MB
    183
    >>> round(estimate_worker_mb(139, "float32"))    # base as openai-whisper holds it: measured 423 MB
    426
    >>> round(estimate_worker_mb(1543, "int8"))      # large-v3-turbo on a CPU
    1478
    >>> round(estimate_worker_mb(1543, "float16"))   # ... on a GPU, as it is on disk
    1817
    >>> estimate_worker_mb(72, "something-new") == estimate_worker_mb(72, "float32")  # unknown: the largest
    True
    """
    per_weight = BYTES_PER_WEIGHT.get(compute_type, 4.0)
    if compute_type.startswith("int8"):
        # Only the linear layers are quantized; the rest stays float32 (4 bytes) on CPU.
        per_weight = QUANTIZED_SHARE * per_weight + (1 - QUANTIZED_SHARE) * 4.0
    return RUNTIME_MB + weights_mb * per_weight / DISK_BYTES_PER_WEIGHT * ACTIVATIONS


def guess_worker_mb(info: "ModelInfo | None", compute_type: str = "float32") -> float:
    """`estimate_worker_mb` for an installed model, from its weights' size on disk."""
    if info is None:
        return UNSEEN_MODEL_MB
    from whisperd.core.model_dirs import weights_file

    try:
        size_mb = weights_file(info.path).stat().st_size / (1 << 20)
    except OSError:
        return UNSEEN_MODEL_MB
    return estimate_worker_mb(size_mb, compute_type)
