"""Importing the shim's app loads no numerical or model package: it starts in milliseconds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("numpy", "ctranslate2", "torch", "whisper", "faster_whisper", "av")


def loaded_after(statement: str) -> list[str]:
    code = (f"import sys, json\n{statement}\n"
            f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_importing_the_shim_app_loads_no_heavy_package():
    assert loaded_after("import shim.app") == []


def test_building_the_app_loads_none_either():
    assert loaded_after(
        "from shim.app import build_app\n"
        "from shim.config import SHIM_SETTINGS, ShimConfig\n"
        "from whisperd.core.settings import build\n"
        "build_app(build(ShimConfig, SHIM_SETTINGS, 'shim', {}, {}, '/dev/null'))"
    ) == []


def test_the_probe_sees_a_heavy_import():
    # The check itself can fail: numpy imported is numpy seen.
    assert "numpy" in loaded_after("import shim.app, numpy")
