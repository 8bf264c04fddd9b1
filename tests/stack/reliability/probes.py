"""What a process holds, read from /proc: file descriptors, children, memory, sockets.

Used to prove "nothing leaked": a snapshot before a batch of requests, one after
a settle period, compared category by category. Descriptors that come and go for
a good reason are classified rather than tolerated with a blanket slack:

- sockets and pipes whose other end is a cold worker (workers start and are
  reaped on their own schedule; their count is checked against the workers alive);
- sockets whose other end is the shim (its connection pool to the daemon, bounded
  by `--connections`).
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable


def fd_targets(pid: int) -> dict[int, str]:
    out = {}
    base = f"/proc/{pid}/fd"
    for name in os.listdir(base):
        try:
            out[int(name)] = os.readlink(f"{base}/{name}")
        except OSError:
            pass  # closed meanwhile
    return out


def proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def rss_mb(pid: int) -> float:
    try:
        return int(proc_status(pid)["VmRSS"].split()[0]) / 1024
    except (OSError, KeyError):
        return 0.0


def hwm_mb(pid: int) -> float:
    """Peak resident memory of the process so far."""
    try:
        return int(proc_status(pid)["VmHWM"].split()[0]) / 1024
    except (OSError, KeyError):
        return 0.0


class PeakMemory:
    """Peak resident memory (MB) while a block runs: of `pid`, or with `tree` of it and every
    descendant summed (cold workers included). RSS is sampled every `interval` s; for one
    process VmHWM is also reset first (root may) and read after, so no peak is missed.

        with PeakMemory(pid) as mem: ...
        mem.idle, mem.peak, mem.above_idle
    """

    def __init__(self, pid: int, *, tree: bool = False, interval: float = 0.01) -> None:
        self.pid, self.tree, self.interval = pid, tree, interval
        self.idle = self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._hwm = False

    def _now(self) -> float:
        pids = [self.pid, *descendants(self.pid)] if self.tree else [self.pid]
        return sum(rss_mb(p) for p in pids)

    def __enter__(self) -> "PeakMemory":
        if not self.tree:
            try:
                with open(f"/proc/{self.pid}/clear_refs", "w") as f:
                    f.write("5")  # VmHWM := VmRSS now
                self._hwm = True
            except OSError:
                pass
        self.idle = self.peak = self._now()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self._now())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._now(), hwm_mb(self.pid) if self._hwm else 0.0)

    @property
    def above_idle(self) -> float:
        return self.peak - self.idle


def children(pid: int) -> list[int]:
    """Every child, whichever thread forked it (each thread lists its own children)."""
    found = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found += [int(p) for p in f.read().split()]
        except OSError:
            pass
    return sorted(set(found))


def descendants(pid: int) -> list[int]:
    out, todo = [], children(pid)
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children(p))
    return sorted(out)


def state(pid: int) -> str:
    try:
        return proc_status(pid)["State"].split()[0]
    except (OSError, KeyError):
        return "gone"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _inode(target: str) -> str | None:
    m = re.match(r"(?:socket|pipe):\[(\d+)\]$", target)
    return m.group(1) if m else None


def unix_peers() -> dict[str, tuple[str, str]]:
    """Unix socket inode → (state, peer inode), from `ss` (the kernel's sock_diag)."""
    out = subprocess.run(["ss", "-xan"], capture_output=True, text=True, check=True).stdout
    peers = {}
    for line in out.splitlines()[1:]:
        cols = line.split()
        # Netid State Recv-Q Send-Q Local-Address Port Peer-Address Port
        if len(cols) >= 8:
            peers[cols[5]] = (cols[1], cols[7])
    return peers


def inode_owners(pids: Iterable[int]) -> dict[str, set[int]]:
    """socket/pipe inode → the pids (among `pids`) holding it."""
    owners: dict[str, set[int]] = {}
    for pid in pids:
        try:
            targets = fd_targets(pid)
        except OSError:
            continue
        for target in targets.values():
            ino = _inode(target)
            if ino:
                owners.setdefault(ino, set()).add(pid)
    return owners


@dataclass
class Snapshot:
    fds: Counter = field(default_factory=Counter)  # category → count, per process role
    worker_fds: int = 0
    workers: int = 0
    shim_links: int = 0  # daemon-side sockets whose peer is the shim
    shim_pool: int = 0  # shim-side unix sockets (its connections to the daemon)
    processes: tuple[str, ...] = ()  # daemon descendants that are not cold workers, by command
    zombies: int = 0
    tmp_open: tuple[str, ...] = ()  # files under /tmp held open (logs excepted)

    def comparable(self) -> dict:
        return {"fds": dict(self.fds), "processes": self.processes, "zombies": self.zombies,
                "tmp_open": self.tmp_open, "shim_links_match_pool": self.shim_links == self.shim_pool}


def snapshot(daemon_pid: int, shim_pid: int | None, worker_pids: Iterable[int] = (),
             keep_open: Iterable[str] = ()) -> Snapshot:
    """Classify every descriptor of the daemon (and shim) by what its other end is."""
    workers = set(worker_pids)
    family = [daemon_pid, *descendants(daemon_pid)]
    others = [p for p in family if p != daemon_pid]
    pool = [shim_pid] if shim_pid else []
    owners = inode_owners([*family, *pool])
    peers = unix_peers()
    inode_pid = {ino: pids for ino, pids in owners.items()}
    snap = Snapshot(workers=len(workers))
    keep = set(keep_open)

    own_inodes = Counter(_inode(t) for t in fd_targets(daemon_pid).values())
    if shim_pid:
        own_inodes.update(_inode(t) for t in fd_targets(shim_pid).values())

    def classify(pid: int, role: str, target: str) -> str:
        ino = _inode(target)
        if ino is None:
            if target.startswith("/tmp/") and target not in keep:
                snap.tmp_open += (f"{role}:{target}",)
            return f"{role}:{re.sub(r'[0-9]+', 'N', target) if target.startswith('anon') else target}"
        kind = target.split(":")[0]
        if kind == "socket" and ino in peers:
            st, peer = peers[ino]
            if st == "LISTEN":
                return f"{role}:socket:listen"
            holders = inode_pid.get(peer, set())
        else:  # a pipe: whoever else holds the same inode
            holders = inode_pid.get(ino, set()) - {pid}
        lasting = holders - workers - {shim_pid, daemon_pid}
        if lasting:  # the fork server or resource tracker: part of the daemon's fixed set-up
            return f"{role}:{kind}:" + "+".join(sorted({_role(h, daemon_pid) for h in lasting}))
        if holders & workers:
            return "worker"
        if shim_pid in holders and pid == daemon_pid:
            return "shim-link"
        if daemon_pid in holders and pid == shim_pid:
            return "shim-pool"
        if pid in holders or own_inodes[ino] > 1:
            return f"{role}:{kind}:self"
        return f"{role}:{kind}:other"

    for fd, target in fd_targets(daemon_pid).items():
        c = classify(daemon_pid, "daemon", target)
        if c == "worker":
            snap.worker_fds += 1
        elif c == "shim-link":
            snap.shim_links += 1
        else:
            snap.fds[c] += 1
    if shim_pid:
        for fd, target in fd_targets(shim_pid).items():
            c = classify(shim_pid, "shim", target)
            if c == "shim-pool":
                snap.shim_pool += 1
            elif target.startswith("socket:") and _inode(target) not in peers:
                snap.fds["shim:socket:tcp"] += 1  # the listener and any live client connection
            else:
                snap.fds[c] += 1
    procs = []
    for p in others:
        if p in workers:
            continue
        if state(p) == "Z":
            snap.zombies += 1
        procs.append(_role(p, daemon_pid))
    snap.processes = tuple(sorted(procs))
    return snap


def _role(pid: int, daemon_pid: int) -> str:
    if pid == daemon_pid:
        return "daemon"
    cmd = cmdline(pid)
    for name in ("resource_tracker", "forkserver"):
        if name in cmd:
            return name
    return cmd[:60] or str(pid)


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


def net_sockets(pid: int) -> list[tuple[str, str, str]]:
    """(proto, local, remote) of every inet socket `pid` holds, from /proc/PID/net/*."""
    inodes = {_inode(t) for t in fd_targets(pid).values()} - {None}
    found = []
    for proto in ("tcp", "tcp6", "udp", "udp6", "raw", "raw6"):
        try:
            lines = Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[9] in inodes:
                found.append((proto, _addr(cols[1]), _addr(cols[2])))
    return found


def _addr(hexaddr: str) -> str:
    ip, port = hexaddr.split(":")
    raw = bytes.fromhex(ip)
    if len(raw) == 4:
        host = ".".join(str(b) for b in raw[::-1])
    else:  # four little-endian 32-bit words
        words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
        b = b"".join(words)
        host = ":".join(b[i:i + 2].hex() for i in range(0, 16, 2))
    return f"{host}:{int(port, 16)}"


def is_loopback(addr: str) -> bool:
    host = addr.rsplit(":", 1)[0]
    return host.startswith("127.") or host in ("0000:0000:0000:0000:0000:0000:0000:0001",
                                               "0000:0000:0000:0000:0000:ffff:7f00:0001") \
        or host.startswith("0000:0000:0000:0000:0000:ffff:7f")


def files_containing(root: str, needles: list[bytes], since: float, *, skip: Iterable[str] = (),
                     max_size: int = 64 << 20) -> list[str]:
    """Regular files under `root` modified after `since` that contain any of `needles`."""
    skip = tuple(skip)
    hits = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not os.path.join(dirpath, d).startswith(skip)]
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
                if not (st.st_mode & 0o170000 == 0o100000) or st.st_mtime < since or st.st_size > max_size:
                    continue
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            if any(n in data for n in needles):
                hits.append(path)
    return hits


def unix_listen_paths(pid: int) -> list[str]:
    """Paths of the Unix sockets `pid` listens on (e.g. the fork server's, under /tmp/pymp-*)."""
    out = subprocess.run(["ss", "-xlpn"], capture_output=True, text=True, check=True).stdout
    return [line.split()[4] for line in out.splitlines()[1:] if f"pid={pid}," in line and line.split()[4] != "*"]
