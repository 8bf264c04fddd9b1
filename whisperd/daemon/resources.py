"""What the machine has left: free memory and VRAM, a process's resident size.

Probes only, read by the pool when a cold start is possible; no policy here.
"""

from __future__ import annotations


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
