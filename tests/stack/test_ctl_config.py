"""`whisperctl` finds a real daemon through the config file alone: `[whisperd]`'s socket, or `[whisperctl]`'s."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from testing.stack import ROOT, Daemon


@pytest.fixture(scope="module")
def daemon():
    # The null engine: this is about finding the socket, not about transcribing.
    d = Daemon("--engine", "null", "--max-cold-workers", "0")
    yield d
    d.stop()


def ctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """whisperctl as a real process, with no WHISPERD_* of ours leaking in."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("WHISPERD_")}
    return subprocess.run([sys.executable, "-m", "whisperd.client.cli", *args], capture_output=True, text=True,
                          env={**base, **(env or {})}, cwd=ROOT, timeout=60)


def test_the_daemons_section_is_enough_by_flag_and_by_env(daemon, tmp_path):
    conf = tmp_path / "whisperd.conf"
    conf.write_text(f"[whisperd]\nsocket = {daemon.socket}\nmodel = tiny.en\n")
    by_flag = ctl("--config", str(conf), "status")
    assert by_flag.returncode == 0, by_flag.stderr
    assert daemon.socket in by_flag.stdout
    by_env = ctl("status", "--json", env={"WHISPERD_CONFIG": str(conf)})
    assert by_env.returncode == 0, by_env.stderr
    assert '"status": "ready"' in by_env.stdout


def test_whisperctls_own_section_wins_and_env_beats_the_file(daemon, tmp_path):
    conf = tmp_path / "whisperd.conf"
    conf.write_text(f"[whisperd]\nsocket = {tmp_path / 'elsewhere.sock'}\n[whisperctl]\nsocket = {daemon.socket}\n")
    assert ctl("--config", str(conf), "status").returncode == 0
    missing = ctl("--config", str(conf), "status", env={"WHISPERD_SOCKET": str(tmp_path / "nothing.sock")})
    assert missing.returncode == 3 and "nothing.sock" in missing.stderr


def test_a_missing_explicit_config_file_exits_2(tmp_path):
    r = ctl("--config", str(tmp_path / "nope.conf"), "status")
    assert r.returncode == 2 and "does not exist" in r.stderr
