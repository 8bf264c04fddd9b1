"""Soak: a few hundred mixed requests at concurrency 16 through HTTP, loopback only.

0 lost, 0 unexpected 5xx, every answer right; RSS and descriptor counts flat after
warm-up; nothing leaked once it is over. Writes docs/soak.png (when matplotlib is
installed) and prints the figures that docs/reliability.md reports.

Slow by design (~6-7 min on two cores): `make soak`. WHISPERD_SOAK_REQUESTS sets the count.
"""

from __future__ import annotations

import os
import time
from collections import Counter

import pytest

from testing.stack import ROOT, Stack
from tests.stack.reliability import soak
from tests.stack.reliability.conftest import Watched
from whisperd.core.replies import DaemonStatus

REQUESTS = int(os.environ.get("WHISPERD_SOAK_REQUESTS", "300"))
CONCURRENCY = 16
WARM_UP = 0.2  # the first fifth of the run: workers start, pools fill, allocators grow
TIME_LIMIT_S = 900
PLOT = ROOT / "docs" / "soak.png"


def quarters(rows: list[dict], key) -> tuple[float, float]:
    """Max of `key` over the first and the last quarter of the samples after warm-up."""
    steady = rows[int(len(rows) * WARM_UP):]
    q = max(1, len(steady) // 4)
    return max(key(r) for r in steady[:q]), max(key(r) for r in steady[-q:])


def total_rss(r: dict) -> float:
    return r["daemon_rss"] + r["children_rss"]


def total_fds(r: dict) -> int:
    return r["daemon_fds"] + r["children_fds"]


@pytest.mark.slow
def test_soak():
    stack = Stack("--engine", "faster-whisper")
    watched = Watched(stack.daemon, stack.shim)
    try:
        before = watched.settle()
        jobs = soak.workload(REQUESTS)
        started = time.monotonic()
        with soak.Sampler(stack.daemon.proc.pid, stack.shim.proc.pid) as sampler:
            outcomes = soak.run(stack.url, jobs, CONCURRENCY)
        took = time.monotonic() - started
        rows = sampler.rows
        after = watched.assert_no_leak(before, timeout=30)
        summary = summarize(outcomes, rows, took, stack, after)
        print("\n" + summary)
        if plot(rows, outcomes, started, took):
            print(f"plot: {PLOT}")

        assert len(outcomes) == REQUESTS
        lost = [o for o in outcomes if o.status == 0]
        server_errors = [o for o in outcomes if o.status >= 500]
        wrong = [o for o in outcomes if not o.ok]
        assert not lost, lost[:5]
        assert not server_errors, server_errors[:5]
        assert not wrong, wrong[:5]
        assert took < TIME_LIMIT_S
        for name, key in (("daemon+workers RSS", total_rss), ("shim RSS", lambda r: r["shim_rss"]),
                          ("daemon+workers fds", total_fds), ("shim fds", lambda r: r["shim_fds"])):
            first, last = quarters(rows, key)
            assert last <= 1.2 * first, f"{name} grew after warm-up: {first:.0f} -> {last:.0f}"
    finally:
        stack.stop()


def summarize(outcomes: list[soak.Outcome], rows: list[dict], took: float, stack: Stack, after) -> str:
    lines = [f"soak: {len(outcomes)} requests, concurrency {CONCURRENCY}, {took:.0f} s "
             f"({len(outcomes) / took:.2f} req/s), {os.cpu_count()} CPUs"]
    lines.append("  outcomes: " + ", ".join(f"{k}: {v}" for k, v in sorted(
        Counter(f"{o.kind} {o.status}{'' if o.ok else ' WRONG'}" for o in outcomes).items())))
    for kind in ("short", "long", "bad"):
        xs = sorted(o.seconds for o in outcomes if o.kind == kind)
        if xs:
            lines.append(f"  {kind:5} n={len(xs):3}  p50 {xs[len(xs) // 2]:.1f} s  "
                         f"p95 {xs[int(len(xs) * 0.95)]:.1f} s  max {xs[-1]:.1f} s")
    for name, key in (("daemon+workers RSS MB", total_rss), ("shim RSS MB", lambda r: r["shim_rss"]),
                      ("daemon+workers fds", total_fds), ("shim fds", lambda r: r["shim_fds"])):
        first, last = quarters(rows, key)
        lines.append(f"  {name:22} start {key(rows[0]):6.0f}  steady first-quarter max {first:6.0f}  "
                     f"last-quarter max {last:6.0f}  ({last / first:.2f}x)  end {key(rows[-1]):6.0f}")
    lines.append(f"  after settling: cold workers {after.workers}, no leak (descriptors, processes, files)")
    served = watched_status(stack)
    lines.append(f"  daemon: served {served.served}, spawns {served.spawns}, crashes {served.crashes}")
    return "\n".join(lines)


def watched_status(stack: Stack) -> DaemonStatus:
    from whisperd.client import Client

    with Client(stack.daemon.socket, timeout=30) as c:
        return c.status()


def plot(rows: list[dict], outcomes: list[soak.Outcome], started: float, took: float) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    t0 = rows[0]["t"]
    t = [r["t"] - t0 for r in rows]
    warm = t[int(len(rows) * WARM_UP)]
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    ax1.plot(t, [r["daemon_rss"] for r in rows], label="daemon (hot worker)")
    ax1.plot(t, [r["children_rss"] for r in rows], label="cold workers + fork server + tracker")
    ax1.plot(t, [total_rss(r) for r in rows], label="daemon total", linewidth=2)
    ax1.plot(t, [r["shim_rss"] for r in rows], label="shim")
    ax1.set_ylabel("RSS (MB)")
    ax1.set_ylim(0, 1.4 * max(total_rss(r) for r in rows))
    ax1.legend(loc="upper left", ncol=2, fontsize=8)
    ax2.plot(t, [r["daemon_fds"] for r in rows], label="daemon")
    ax2.plot(t, [r["children_fds"] for r in rows], label="daemon's children")
    ax2.plot(t, [r["shim_fds"] for r in rows], label="shim")
    ax2.set_ylabel("open descriptors")
    ax2.set_ylim(0, 1.4 * max(max(r["daemon_fds"], r["children_fds"], r["shim_fds"]) for r in rows))
    ax2.legend(loc="upper left", ncol=3, fontsize=8)
    done = sorted(o.finished - t0 for o in outcomes)
    ax3.step(done, range(1, len(done) + 1), where="post", label="answered")
    ax3.set_ylabel("requests answered")
    ax3.set_xlabel("seconds")
    for ax in (ax1, ax2, ax3):
        ax.axvspan(0, warm, color="0.9", zorder=0)
        ax.grid(alpha=0.3)
    ok = sum(o.ok for o in outcomes)
    fig.suptitle(f"soak: {len(outcomes)} mixed requests at concurrency {CONCURRENCY} over HTTP, {took:.0f} s; "
                 f"{ok}/{len(outcomes)} right, 0 lost (grey: warm-up)", fontsize=10)
    fig.tight_layout()
    PLOT.parent.mkdir(exist_ok=True)
    fig.savefig(PLOT, dpi=110)
    plt.close(fig)
    return True
