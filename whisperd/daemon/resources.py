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

    def __init__(self, device: str, models: Mapping[str, "ModelInfo"]) -> None:
        self.device = device  # "cuda": workers hold their model in VRAM
        self.models = models
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
        """A worker's resident size: measured once one ran, else guessed from the weights."""
        if model in self._measured_mb:
            return self._measured_mb[model]
        if model not in self._guessed_mb:
            self._guessed_mb[model] = guess_worker_mb(self.models.get(model))
        return self._guessed_mb[model]

    def measured(self, model: str, pid: int | None) -> None:
        """A worker for `model` is ready as process `pid`: remember the largest seen."""
        if pid:
            self._measured_mb[model] = max(self._measured_mb.get(model, 0.0), rss_mb(pid))


def guess_worker_mb(info: "ModelInfo | None") -> float:
    """The interpreter and libraries (~300 MB) plus twice the weights' size on disk."""
    if info is None:
        return 300.0 + 2.0 * 500.0
    weights = info.path / "model.bin" if info.kind == "ctranslate2" else info.path
    try:
        size = weights.stat().st_size / (1 << 20)
    except OSError:
        size = 500.0
    return 300.0 + 2.0 * size
