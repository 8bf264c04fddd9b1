#!/bin/bash
# Build the whisperd .deb into dist/ (make deb).
#
# Copies the tracked (and untracked, not ignored) files of the work tree into
# build/deb/whisperd-<version>/, adds packaging/debian as debian/, and runs
# dpkg-buildpackage there; the venv is built by debian/rules with /usr/bin/python3.
# Installs the Debian build tools it needs when they are missing (root only).
# Environment: WHISPERD_PIP_ARGS (extra pip options, e.g. a CPU torch index),
#              NO_LINTIAN=1 to skip lintian.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

need=()
for p in debhelper dpkg-dev python3-venv python3-dev lintian git fakeroot; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
if ((${#need[@]})); then
    echo ">> installing build tools: ${need[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi
[ "$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')" = 3.11 ] \
    || { echo "error: /usr/bin/python3 must be 3.11 (Debian 12)" >&2; exit 1; }

python3 packaging/conf-keys.py packaging/debian/whisperd.conf

VERSION=$(python3 -c 'import re; print(re.search(r"__version__ = \"(.+?)\"", open("whisperd/__init__.py").read()).group(1))')
DEBVER=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
[ "${DEBVER%%-*}" = "$VERSION" ] || echo "warning: debian/changelog says $DEBVER, whisperd says $VERSION" >&2

BUILD=$ROOT/build/deb
SRC=$BUILD/whisperd-$VERSION
rm -rf "$BUILD"
mkdir -p "$SRC" "$ROOT/dist"
git ls-files -z --cached --others --exclude-standard -- . ':!packaging/debian' ':!.ci' \
    | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
    | tar --null -T - -cf - | tar -xf - -C "$SRC"
cp -a packaging/debian "$SRC/debian"

start=$(date +%s)
if ! ( cd "$SRC" && dpkg-buildpackage -b -us -uc ) > "$BUILD/build.log" 2>&1; then
    tail -40 "$BUILD/build.log"; echo "error: dpkg-buildpackage failed, see $BUILD/build.log" >&2; exit 1
fi
grep -E '^(dpkg-deb|   dh_|Successfully installed)' "$BUILD/build.log" | cut -c1-200
end=$(date +%s)

deb=$(ls "$BUILD"/whisperd_*.deb)
rm -f "$ROOT"/dist/whisperd_*.deb
mv "$deb" "$ROOT/dist/"
deb=$ROOT/dist/$(basename "$deb")
echo ">> built $deb in $((end - start)) s: $(du -h "$deb" | cut -f1) ($(stat -c %s "$deb") bytes)," \
     "installed size $(dpkg-deb -f "$deb" Installed-Size) KiB"
echo ">> Depends: $(dpkg-deb -f "$deb" Depends)"
if [ "${NO_LINTIAN:-}" != 1 ]; then
    echo ">> lintian"
    lintian --info --tag-display-limit 0 "$deb" | tee "$BUILD/lintian.log" || true
    echo ">> lintian: $(grep -c '^E:' "$BUILD/lintian.log" || true) errors, $(grep -c '^W:' "$BUILD/lintian.log" || true) warnings"
fi
