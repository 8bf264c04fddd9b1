"""Throughput of 1, 2 and 3 whisperd hosts behind the real HAProxy, and requests retried and lost.

In one run, on this machine, the same bounded load from the official `openai` SDK (default
retries; `--workers` threads, `--calls` JFK clips of 11 s each per thread):

  1. one host straight (no balancer): the baseline;
  2. 1, 2 and 3 hosts behind HAProxy on packaging/haproxy/whisperd.cfg (only addresses changed);
  3. 3 hosts with faults during the load: `kill -9` of one daemon (restarted after it left
     rotation) and a SIGTERM drain of another host (shim, then daemon, as systemd stops them).

All hosts share this machine's cores: more hosts add no CPU here, so the figure to read is
what the balancer and the extra processes cost, and the retried / lost counts under faults.

    .venv/bin/python bench/scale_out.py [--workers 6] [--calls 5]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import git_rev, machine, median, percentile, progress, table  # noqa: E402
from testing.cluster import Cluster, wait_until  # noqa: E402
from testing.sdk_load import Call, Load, summary  # noqa: E402
from testing.speech import JFK_FILE, JFK_TEXT  # noqa: E402
from testing.stack import Stack, status  # noqa: E402

JFK_SECONDS = 11.0


def run_load(url: str, workers: int, calls: int, during=None) -> tuple[list[Call], float]:
    load = Load(url, JFK_FILE, JFK_TEXT, workers=workers, max_calls=calls)
    started = time.monotonic()
    load.start()
    if during is not None:
        during(load)
    done = load.wait(timeout=1800)
    return done, time.monotonic() - started


def row(name: str, hosts: int, calls: list[Call], wall: float) -> list[object]:
    s = summary(calls)
    latencies = [c.seconds for c in calls if c.ok]
    return [name, hosts, s["calls"], f"{wall:.1f}", f"{s['ok'] / wall:.2f}", f"{s['ok'] * JFK_SECONDS / wall:.1f}",
            f"{median(latencies):.2f}" if latencies else "-", f"{percentile(latencies, 95):.2f}" if latencies else "-",
            s["retried"], s["lost"]]


def faults(cluster: Cluster, notes: list[str]):
    """kill -9 host1's daemon, drain host2, restart host1 - while the load runs."""
    killed, drained = cluster.hosts[0], cluster.hosts[1]
    hap = cluster.haproxy

    def active(host) -> int:
        try:
            return status(host.socket).active
        except Exception:
            return 0

    def during(load: Load) -> None:
        wait_until(lambda: load.done() >= 3, 600, "first calls")
        wait_until(lambda: active(killed) >= 1, 120, "work on host1")
        killed.kill_daemon()
        notes.append(f"host1 kill -9 → out of rotation in {hap.wait_for('host1', ('DOWN', 'DRAIN'), 60):.2f} s")
        wait_until(lambda: active(drained) >= 1, 120, "work on host2")
        result: list = []
        stopper = threading.Thread(target=lambda: result.append(drained.terminate()))
        stopper.start()
        notes.append(f"host2 SIGTERM → out of rotation in {hap.wait_for('host2', ('DOWN', 'DRAIN'), 60):.2f} s")
        killed.restart_daemon()
        notes.append(f"host1 restarted → back in rotation {hap.wait_for('host1', ('UP',), 60):.2f} s after ready")
        stopper.join(300)
        shim_exit, last = result[0]
        dropped = last.counters.get("dropped_queued", 0) + last.counters.get("dropped_running", 0)
        notes.append(f"host2 drained: shim exit {shim_exit}, daemon served {last.served}, dropped {dropped}")

    return during


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=6, help="SDK client threads")
    parser.add_argument("--calls", type=int, default=5, help="JFK clips per thread")
    args = parser.parse_args()
    rows: list[list[object]] = []
    notes: list[str] = []

    progress("1 host, no balancer")
    stack = Stack()
    try:
        run_load(stack.url, 2, 1)  # warm-up
        rows.append(row("direct (no HAProxy)", 1, *run_load(stack.url, args.workers, args.calls)))
    finally:
        stack.stop()
    for n in (1, 2, 3):
        progress(f"{n} host(s) behind HAProxy")
        cluster = Cluster(n)
        try:
            run_load(cluster.url, 2, 1)
            rows.append(row("HAProxy", n, *run_load(cluster.url, args.workers, args.calls)))
        finally:
            cluster.stop()
    progress("3 hosts behind HAProxy, with a kill -9 and a drain during the load")
    cluster = Cluster(3)
    try:
        run_load(cluster.url, 2, 1)
        rows.append(row("HAProxy + faults", 3, *run_load(cluster.url, args.workers, args.calls * 2,
                                                          during=faults(cluster, notes))))
    finally:
        cluster.stop()

    print(f"\n{machine()}; whisperd {git_rev()}; {args.workers} SDK threads × {args.calls} JFK clips (11 s) "
          f"(× {args.calls * 2} with faults); each host: daemon (tiny.en, faster-whisper, defaults) + shim\n")
    print(table(["run", "hosts", "calls", "wall s", "req/s", "audio s/s", "p50 s", "p95 s", "retried", "lost"], rows))
    for note in notes:
        print(f"- {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
