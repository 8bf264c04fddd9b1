#!/usr/bin/env bash
# Refresh the hash-pinned lock files from the requirement files (`make lock`):
#   requirements/runtime.lock  runtime.txt              - the .deb's venv
#   requirements/dev.lock      runtime.txt + test.txt   - `make venv`, CI
# Every package of the set is pinned with its sha256 hashes, except torch itself:
# its build is the host's choice (CPU here; a GPU host installs the CUDA wheel of
# the same version), so it is installed after the lock, pinned by version only
# (constraints.txt). Nothing in a lock depends on torch (openai-whisper, which
# does, is installed with --no-deps and pinned with its hash in whisper.txt).
# Uses pip-tools from its own throw-away venv; run from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=${LOCK_TOOLS:-.cache/lock-tools}
[ -x "$TOOLS/bin/pip-compile" ] || { python3 -m venv "$TOOLS" && "$TOOLS/bin/pip" install -q pip-tools; }

compile() {  # output, inputs...
    local out=$1; shift
    CUSTOM_COMPILE_COMMAND="make lock" "$TOOLS/bin/pip-compile" -q --generate-hashes --allow-unsafe \
        --strip-extras --no-emit-index-url --no-emit-find-links -c requirements/constraints.txt -o "$out" "$@"
    # Drop torch's own entry (its hashes are one build's); its dependencies stay, hashed.
    awk '/^torch==/ {skip=1; next} skip && /^[^ ]/ {skip=0} !skip' "$out" > "$out.tmp" && mv "$out.tmp" "$out"
}
compile requirements/runtime.lock requirements/runtime.txt
compile requirements/dev.lock requirements/runtime.txt requirements/test.txt
echo "requirements/runtime.lock, requirements/dev.lock: refreshed; openai-whisper's hash is in whisper.txt"
