#!/usr/bin/env bash
# The Wyoming anchor for bench/live.py: wyoming-faster-whisper from PyPI in its own venv
# (it pins its own faster-whisper; ours must not change). Run once; bench/live.py calls it.
set -euo pipefail
VENV=${WFW_VENV:-/var/cache/whisperd-bench/wfw}
VERSION=${WFW_VERSION:-3.8.1}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q "wyoming-faster-whisper==$VERSION"
"$VENV/bin/python" -m wyoming_faster_whisper --version
