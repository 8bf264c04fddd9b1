#!/bin/bash
# The real install test (make test-deb): a Debian bookworm tree booted with
# systemd-nspawn --boot, the .deb installed with apt, speech transcribed over
# HTTP inside the container, the journal and `systemctl status` checked, then
# `apt purge` and a check that nothing of the package is left.
#
#   packaging/test-deb.sh [dist/whisperd_*.deb]
#
# Root only. The debootstrap tree is cached in $WHISPERD_TEST_CACHE
# (default /var/cache/whisperd-test/rootfs) and reused; each run boots a fresh
# copy of it, deleted afterwards (KEEP=1 keeps it). The container has its own
# network namespace with only loopback (--private-network): port 5000 is its own.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
T0=$SECONDS

DEB=${1:-$(ls -t dist/whisperd_*.deb 2>/dev/null | head -1)}
[ -n "$DEB" ] && [ -f "$DEB" ] || { echo "error: no dist/whisperd_*.deb; run make deb first" >&2; exit 1; }
DEB=$(readlink -f "$DEB")
[ "$(id -u)" = 0 ] || { echo "error: run as root (debootstrap, systemd-nspawn)" >&2; exit 1; }

CACHE=${WHISPERD_TEST_CACHE:-/var/cache/whisperd-test}
BASE=$CACHE/rootfs
RUN=$CACHE/run.$$
MACHINE=whisperd-test-$$
# The Debian mirror: $DEBIAN_MIRROR, else the one this host's apt already uses (one-line or
# deb822 sources, the security archive skipped), else none - debootstrap's own default.
host_mirror() {
    { grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) print $i}'
      grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{for (i = 2; i <= NF; i++) print $i}'
    } | grep -v -e security -e updates | head -n1
}
MIRROR=${DEBIAN_MIRROR:-$(host_mirror)}
INCLUDE=systemd,systemd-sysv,dbus,python3,adduser,curl,ca-certificates

log() { printf '>> [%4ds] %s\n' $((SECONDS - T0)) "$*"; }
fail() {
    printf '!! FAIL: %s\n' "$*" >&2
    if [ -n "${LEADER:-}" ]; then
        echo "-- last journal lines of whisperd and whisperd-shim:" >&2
        ct journalctl --no-pager -n 40 -u whisperd -u whisperd-shim -u whisperd-wyoming >&2 || true
    fi
    exit 1
}

need=()
for p in debootstrap systemd-container; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
if ((${#need[@]})); then
    log "installing ${need[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# -- the cached tree ----------------------------------------------------------
if [ ! -e "$BASE/.whisperd-test-ok" ] || [ "$(cat "$BASE/.whisperd-test-ok")" != "$INCLUDE" ]; then
    log "debootstrap bookworm into $BASE (cached for next runs)"
    rm -rf "$BASE" "$BASE.tmp"
    mkdir -p "$CACHE"
    debootstrap --variant=minbase --include="$INCLUDE" bookworm "$BASE.tmp" ${MIRROR:+"$MIRROR"} > "$CACHE/debootstrap.log" 2>&1 \
        || { tail -20 "$CACHE/debootstrap.log"; fail "debootstrap"; }
    echo "$INCLUDE" > "$BASE.tmp/.whisperd-test-ok"
    mv "$BASE.tmp" "$BASE"
else
    log "reusing cached tree $BASE"
fi

# systemd-nspawn registers with machined and makes a scope unit through the host's
# systemd. Where the host's PID 1 is not systemd (a container, a sandbox VM) it must
# do neither: --register=no --keep-unit.
NSPAWN=(systemd-nspawn --quiet)
[ -d /run/systemd/system ] || NSPAWN+=(--register=no --keep-unit)

# The package's dependencies go into the cached tree now, with the network, so that
# the test's apt install runs in a container without one.
deps=$(dpkg-deb -f "$DEB" Depends | tr ',' '\n' | sed -E 's/\(.*\)//; s/\|.*//; s/[[:space:]]//g' | grep -v '^$' | sort -u)
missing=$(for d in $deps; do chroot "$BASE" dpkg-query -W -f='${Status}\n' "$d" 2>/dev/null | grep -q 'ok installed' || echo "$d"; done)
if [ -n "$missing" ]; then
    log "adding the package's dependencies to the cached tree: $(echo $missing)"
    "${NSPAWN[@]}" -D "$BASE" --pipe -E DEBIAN_FRONTEND=noninteractive \
        sh -c "apt-get update -q && apt-get install -y -q --no-install-recommends $(echo $missing)" > "$CACHE/deps.log" 2>&1 \
        || { tail -20 "$CACHE/deps.log"; fail "installing dependencies into the tree"; }
fi

log "copying the tree to $RUN"
cp -a --reflink=auto "$BASE" "$RUN"

NSPAWN_PID=
cleanup() {
    if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
        kill -TERM "$NSPAWN_PID" 2>/dev/null || true
        for _ in $(seq 30); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 1; done
        kill -KILL "$NSPAWN_PID" 2>/dev/null || true
    fi
    if [ "${KEEP:-}" = 1 ]; then echo "kept $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT

# -- boot -----------------------------------------------------------------------
log "booting $RUN with systemd-nspawn --boot"
"${NSPAWN[@]}" -D "$RUN" --machine="$MACHINE" --boot --private-network --console=passive \
    --bind-ro="$(dirname "$DEB")":/mnt/deb --bind-ro="$ROOT/tests/fixtures":/mnt/fixtures \
    > "$CACHE/nspawn.$$.log" 2>&1 &
NSPAWN_PID=$!
LEADER=
for _ in $(seq 50); do
    LEADER=$(pgrep -P "$NSPAWN_PID" -x systemd || true)
    [ -n "$LEADER" ] && break
    kill -0 "$NSPAWN_PID" 2>/dev/null || { cat "$CACHE/nspawn.$$.log"; fail "systemd-nspawn exited"; }
    sleep 0.2
done
[ -n "$LEADER" ] || fail "no systemd in the container"

# Run a command inside the booted container (all its namespaces, a clean environment).
ct() { nsenter -t "$LEADER" -a env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
           LANG=C.UTF-8 TERM=dumb SYSTEMD_PAGER= "$@"; }

state=
for _ in $(seq 120); do
    state=$(ct systemctl is-system-running 2>/dev/null || true)
    case $state in running|degraded) break ;; esac
    sleep 0.5
done
log "container booted: $state"
[ "$state" = running ] || ct systemctl --failed --no-pager || true

# -- install ----------------------------------------------------------------------
T_INSTALL=$SECONDS
log "apt install ./$(basename "$DEB")"
ct sh -c "cd /mnt/deb && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ./$(basename "$DEB")" \
    > "$CACHE/install.$$.log" 2>&1 || { tail -30 "$CACHE/install.$$.log"; fail "apt install"; }
log "installed in $((SECONDS - T_INSTALL)) s"

active=
for _ in $(seq 180); do
    if active=$(ct systemctl is-active whisperd.socket whisperd whisperd-shim 2>/dev/null); then break; fi
    sleep 1
done
echo "$active" | tr '\n' ' '; echo
if ! ct systemctl is-active -q whisperd whisperd-shim; then
    ct systemctl status --no-pager -l whisperd whisperd-shim || true
    ct journalctl --no-pager -n 60 -u whisperd -u whisperd-shim || true
    fail "whisperd and whisperd-shim are not both active"
fi
log "whisperd and whisperd-shim are active, $((SECONDS - T_INSTALL)) s after apt install began"

# -- transcribe over HTTP, inside the container --------------------------------------
T_REQ=$SECONDS
reply=$(ct curl -sS --fail-with-body --retry 5 --retry-connrefused --retry-delay 1 --max-time 120 \
        -F file=@/mnt/fixtures/fox.wav -F model=whisper-1 -F response_format=json \
        http://127.0.0.1:5000/v1/audio/transcriptions) || { echo "$reply"; fail "POST /v1/audio/transcriptions"; }
log "transcript in $((SECONDS - T_REQ)) s: $reply"
words=$(echo "$reply" | tr 'A-Z' 'a-z' | tr -c 'a-z\n' ' ')
# tiny.en (int8 on CPU) hears "jump" or "jumps"; every other word must be there.
for w in quick brown fox 'jumps?' over lazy dog; do
    echo " $words " | grep -qwE "$w" || fail "word '$w' missing from the transcript"
done
health=$(ct curl -sS --max-time 10 http://127.0.0.1:5000/health) || fail "GET /health"
log "GET /health: $health"

# -- journal, priorities, STATUS= ---------------------------------------------------
journal=$(ct journalctl --no-pager -u whisperd -p info -o cat)
echo "$journal" | sed 's/^/   | /' | tail -8
echo "$journal" | grep -q 'ready in' || fail "journalctl -u whisperd -p info lacks the 'ready in' line"
echo "$journal" | grep -qE '^<[0-7]>' && fail "priority prefixes reached the journal as text (not parsed)"
prio=$(ct journalctl --no-pager -u whisperd -o json-pretty -g 'ready in' | sed -n 's/.*"PRIORITY" : "\([0-9]\)".*/\1/p' | head -1)
[ "$prio" = 6 ] || fail "the 'ready in' line has priority '$prio', not 6 (info)"
ct journalctl --no-pager -u whisperd -p notice -o cat | grep -q 'ready in' && fail "'ready in' passes -p notice"
log "journal: the daemon's lines carry priorities (ready line PRIORITY=6, filtered out by -p notice)"

status=$(ct systemctl status --no-pager -l whisperd || true)
echo "$status" | sed 's/^/   | /' | head -12
echo "$status" | grep -q 'Status: "ready: model tiny.en' || fail "systemctl status whisperd lacks the STATUS= text"
log "systemctl status shows the STATUS= line"

# -- the Wyoming server: off after install, answers describe once started ----------------
ct systemctl is-enabled -q whisperd-wyoming && fail "whisperd-wyoming is enabled on install (it should be opt-in)"
ct systemctl start whisperd-wyoming || fail "systemctl start whisperd-wyoming"
info=$(ct /opt/venvs/whisperd/bin/python -c '
import asyncio
from wyoming.client import AsyncTcpClient
from wyoming.info import Describe, Info
async def main():
    for _ in range(50):
        try:
            async with AsyncTcpClient("127.0.0.1", 10300) as c:
                await c.write_event(Describe().event())
                info = Info.from_event(await c.read_event())
                return [m.name for m in info.asr[0].models]
        except OSError:
            await asyncio.sleep(0.2)
print(asyncio.run(main()))') || fail "Wyoming describe on 127.0.0.1:10300"
echo "$info" | grep -q "tiny.en" || fail "Wyoming info lacks tiny.en: $info"
log "whisperd-wyoming answers describe: models $info"

# -- units: verify and security scores -------------------------------------------------
UNIT_FILES="/lib/systemd/system/whisperd.service /lib/systemd/system/whisperd.socket
    /lib/systemd/system/whisperd-shim.service /lib/systemd/system/whisperd-wyoming.service"
ct systemd-analyze verify $UNIT_FILES 2>&1 | sed 's/^/   | /'
verify=$(ct systemd-analyze verify $UNIT_FILES 2>&1 | grep -i whisperd || true)
[ -z "$verify" ] || fail "systemd-analyze verify: $verify"
log "systemd-analyze verify: clean"
for u in whisperd.service whisperd-shim.service whisperd-wyoming.service; do
    ct systemd-analyze security --no-pager "$u" > "$CACHE/security.$u.txt" 2>&1 || true
    log "systemd-analyze security $u: $(grep -E 'Overall exposure level' "$CACHE/security.$u.txt" | sed "s/.*$u: //")"
done

# -- purge ------------------------------------------------------------------------------
log "apt purge whisperd"
ct sh -c "DEBIAN_FRONTEND=noninteractive apt-get purge -y -q whisperd" > "$CACHE/purge.$$.log" 2>&1 \
    || { tail -30 "$CACHE/purge.$$.log"; fail "apt purge"; }
left=()
for p in /opt/venvs/whisperd /opt/venvs /etc/whisperd /var/lib/whisperd /run/whisperd /usr/bin/whisperctl \
         /lib/systemd/system/whisperd.service /lib/systemd/system/whisperd.socket \
         /lib/systemd/system/whisperd-shim.service /lib/systemd/system/whisperd-wyoming.service \
         /usr/share/doc/whisperd; do
    ct test -e "$p" -o -L "$p" && left+=("$p")
done
ct getent passwd whisperd >/dev/null && left+=("user whisperd")
ct getent group whisperd >/dev/null && left+=("group whisperd")
ct sh -c 'dpkg-query -W -f="\${db:Status-Abbrev}" whisperd 2>/dev/null | grep -q "^[a-z]i"' && left+=("dpkg status")
stray=$(find "$RUN" -xdev -name '*whisperd*' -not -path '*/var/log/journal/*' -not -path "$RUN/mnt/*" -not -path "$RUN/.whisperd-test-ok" 2>/dev/null \
        | sed "s|^$RUN||" || true)
[ -z "$stray" ] || left+=($stray)
((${#left[@]} == 0)) || fail "left after purge: ${left[*]}"
ct systemctl is-active -q whisperd whisperd-shim whisperd-wyoming whisperd.socket && fail "units still active after purge"
log "purge left nothing (files, units, user, group, dpkg status)"

ct systemctl poweroff >/dev/null 2>&1 || true
for _ in $(seq 30); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 1; done
log "PASS: install test in $((SECONDS - T0)) s (deb $(du -h "$DEB" | cut -f1))"
