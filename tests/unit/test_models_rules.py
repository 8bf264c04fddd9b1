"""Models on disk, without a model: the name table, the memory estimate, the hub's file list and
checksums, the hub cache layout, and the models folder's staging / atomic install / removal."""

from __future__ import annotations

import ast
import importlib.util
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from whisperd.client import installed
from whisperd.client.checksums import RemoteFile, git_blob_id, sha256_of, verify
from whisperd.client.hub import wanted_files
from whisperd.client.models_cli import format_rows, model_rows
from whisperd.core.errors import ChecksumMismatch, ModelFetchFailed, ModelInstallRefused, ModelNotFound
from whisperd.core.model_dirs import hf_cache_models, repo_folder_name, repo_from_folder
from whisperd.core.model_names import BUNDLED, HUB_REPOS, canonical_name, hub_repo, name_for_repo, pull_hint
from whisperd.core.replies import DaemonStatus, LaneStatus, ModelEntry, RescanResult
from whisperd.daemon import models as daemon_models
from whisperd.daemon.requests import model_for
from whisperd.daemon.resources import Resources, estimate_worker_mb, guess_worker_mb, rss_mb
from whisperd.engines.base import ModelInfo

# --- the name table ----------------------------------------------------------------------------


def faster_whispers_table() -> dict[str, str]:
    """`faster_whisper.utils._MODELS`, read from its source (a unit run must not import it)."""
    spec = importlib.util.find_spec("faster_whisper")
    assert spec is not None and spec.submodule_search_locations
    tree = ast.parse((Path(list(spec.submodule_search_locations)[0]) / "utils.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "_MODELS":
            return ast.literal_eval(node.value)
    raise AssertionError("faster_whisper.utils has no _MODELS")


def test_the_usual_names_resolve_to_the_repositories_faster_whisper_uses():
    theirs = faster_whispers_table()
    for name in ("tiny", "base", "small", "medium", "large-v3", "large-v3-turbo", "distil-large-v3",
                 "tiny.en", "base.en", "small.en", "medium.en", "large", "turbo"):
        assert hub_repo(name) == theirs[name], name
    assert {name: theirs[name] for name in HUB_REPOS} == HUB_REPOS  # every entry is theirs, unchanged


def test_english_only_forms_exist_only_where_the_hub_has_them():
    assert hub_repo("large-v3.en") is None and hub_repo("large-v3-turbo.en") is None
    assert all(hub_repo(f"{size}.en") for size in ("tiny", "base", "small", "medium"))


def test_aliases_install_under_the_name_they_stand_for():
    assert canonical_name("turbo") == "large-v3-turbo" and canonical_name("large") == "large-v3"
    assert canonical_name("small") == "small"
    assert name_for_repo("mobiuslabsgmbh/faster-whisper-large-v3-turbo") == "large-v3-turbo"
    assert name_for_repo("someone/else") is None


def test_the_hint_names_the_command_for_known_names_only():
    assert "whisperctl models pull large-v3-turbo" in pull_hint("turbo")
    assert "whisperctl models pull --list" in pull_hint("my-own")


def test_a_request_for_a_missing_model_says_how_to_pull_it():
    tiny = ModelInfo("tiny.en", "ctranslate2", Path("/nonexistent"), False)
    with pytest.raises(ModelNotFound) as err:
        model_for("small", tiny, {"tiny.en": tiny})
    assert "not served here" in err.value.message
    assert "an administrator can install it with 'whisperctl models pull small'" in err.value.message


# --- memory ------------------------------------------------------------------------------------


def test_the_estimate_follows_size_on_disk_and_compute_type():
    assert estimate_worker_mb(1000, "int8") < estimate_worker_mb(1000, "float16") < estimate_worker_mb(1000, "float32")
    assert estimate_worker_mb(2000, "int8") > estimate_worker_mb(1000, "int8")


def test_an_unseen_model_is_estimated_from_its_weights_then_measured(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"\0" * (10 << 20))  # 10 MiB of float16 weights
    info = ModelInfo("m", "ctranslate2", tmp_path, True)
    resources = Resources("cpu", {"m": info}, compute_type="float32")
    assert resources.worker_mb("m") == pytest.approx(estimate_worker_mb(10, "float32"))
    assert guess_worker_mb(info, "int8") == pytest.approx(estimate_worker_mb(10, "int8"))
    resources.measured("m", os.getpid())  # its first start: the figure is this process's RSS
    assert resources.worker_mb("m") == pytest.approx(rss_mb(os.getpid()), rel=0.5)
    assert resources.worker_mb("m") != pytest.approx(estimate_worker_mb(10, "float32"))
    resources.forget("m")  # replaced on disk: estimated again
    assert resources.worker_mb("m") == pytest.approx(estimate_worker_mb(10, "float32"))


# --- the hub's file list and checksums -----------------------------------------------------------


def sibling(name: str, size: int, *, sha256: str | None = None, oid: str = "a" * 40):
    lfs = {"size": size, "sha256": sha256, "pointerSize": 134} if sha256 else None
    return SimpleNamespace(rfilename=name, size=size, blob_id=oid, lfs=lfs)


def test_wanted_files_are_faster_whispers_set_with_their_checksums():
    files = wanted_files("r", [sibling("model.bin", 900, sha256="b" * 64), sibling("config.json", 10),
                               sibling("tokenizer.json", 20), sibling("vocabulary.txt", 30),
                               sibling("README.md", 5), sibling(".gitattributes", 5), sibling("sub/model.bin", 1)])
    assert [f.name for f in files] == ["config.json", "tokenizer.json", "vocabulary.txt", "model.bin"]
    assert files[-1].checksum == ("sha256", "b" * 64) and files[0].checksum == ("git-sha1", "a" * 40)


def test_a_repository_without_the_model_files_is_refused():
    with pytest.raises(ModelFetchFailed, match="no tokenizer.json"):
        wanted_files("r", [sibling("model.bin", 9, sha256="b" * 64), sibling("config.json", 1)])


def test_verify_checks_size_and_the_right_digest(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"weights")
    verify(path, RemoteFile("f", 7, sha256=sha256_of(path)))
    verify(path, RemoteFile("f", 7, git_oid=git_blob_id(path)))
    with pytest.raises(ChecksumMismatch, match="7 bytes arrived"):
        verify(path, RemoteFile("f", 8, sha256=sha256_of(path)))
    with pytest.raises(ChecksumMismatch, match="sha256 is"):
        verify(path, RemoteFile("f", 7, sha256="0" * 64))
    with pytest.raises(ChecksumMismatch, match="no checksum"):
        verify(path, RemoteFile("f", 7))


# --- the hub cache layout -------------------------------------------------------------------------


def make_snapshot(cache: Path, repo: str, commit: str, files=("model.bin", "config.json", "tokenizer.json"),
                  ref: bool = True) -> Path:
    folder = cache / repo_folder_name(repo)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (folder / "blobs").mkdir(exist_ok=True)
    for name in files:
        blob = folder / "blobs" / f"{name}-{commit}"
        blob.write_text(name)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    if ref:
        (folder / "refs").mkdir(exist_ok=True)
        (folder / "refs" / "main").write_text(commit)
    return snapshot


def test_repo_folder_names_round_trip():
    assert repo_folder_name("Systran/faster-whisper-small") == "models--Systran--faster-whisper-small"
    assert repo_from_folder("models--Systran--faster-whisper-small") == "Systran/faster-whisper-small"
    assert repo_from_folder("datasets--a--b") is None and repo_from_folder("models--solo") is None


def test_the_hub_cache_is_read_through_refs_main(tmp_path):
    make_snapshot(tmp_path, "Systran/faster-whisper-small", "old" + "0" * 37, ref=False)
    current = make_snapshot(tmp_path, "Systran/faster-whisper-small", "new" + "0" * 37)
    only = make_snapshot(tmp_path, "org/custom-ct2", "c" * 40, ref=False)  # no refs/main: its only snapshot
    make_snapshot(tmp_path, "org/half", "d" * 40, files=("config.json",))  # cut short: no model.bin
    broken = make_snapshot(tmp_path, "org/dangling", "e" * 40)
    next((broken.parent.parent / "blobs").glob("model.bin-*")).unlink()  # a link to a blob never fetched
    (tmp_path / "models--org--not-a-dir").write_text("")
    assert hf_cache_models(tmp_path) == {"Systran/faster-whisper-small": current, "org/custom-ct2": only}
    found = {m.name: m for m in daemon_models._from_hf_cache(tmp_path)}
    assert set(found) == {"small", "org/custom-ct2"}  # the table's name where it has one
    assert found["small"].path == current and found["small"].multilingual


def test_the_daemon_skips_staging_folders_in_the_models_folder(tmp_path):
    for name in ("small", ".pull-medium-x1y2", ".remove-base-z"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.bin").write_bytes(b"w")
    assert [m.name for m in daemon_models._from_models_dir(tmp_path)] == ["small"]
    assert [m.name for m in installed.local_models(tmp_path)] == ["small"]


def test_where_a_model_came_from(tmp_path):
    models_dir, cache = tmp_path / "models", tmp_path / "hub"
    source = daemon_models.model_source
    assert source(ModelInfo("x", "ctranslate2", models_dir / "x", True), tmp_path, models_dir, cache) == "models_dir"
    assert source(ModelInfo("s", "ctranslate2", cache / "models--a--b" / "snapshots" / "c", True),
                  tmp_path, models_dir, cache) == "hf_cache"
    assert source(ModelInfo("base", "ctranslate2", tmp_path / "assembled" / "base-1", True),
                  tmp_path, models_dir, None) == "bundled"
    assert source(ModelInfo("mine", "ctranslate2", Path("/srv/mine"), True), tmp_path, models_dir, None) == "path"


# --- the models folder: staging, install, remove ---------------------------------------------------


def staged(models_dir: Path, name: str, content: str) -> Path:
    staging = installed.new_staging(models_dir, name)
    (staging / "model.bin").write_text(content)
    (staging / ".cache").mkdir()  # huggingface_hub's bookkeeping
    installed.finish_staging(staging, {"repo": "org/repo", "revision": "abc"})
    return staging


def test_install_renames_the_staging_folder_into_place(tmp_path):
    staging = staged(tmp_path, "small", "one")
    assert staging.name.startswith(".pull-small-")
    assert installed.install(staging, tmp_path / "small") is False
    assert (tmp_path / "small" / "model.bin").read_text() == "one"
    assert not (tmp_path / "small" / ".cache").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small"]
    [model] = installed.local_models(tmp_path)
    assert (model.repo, model.revision) == ("org/repo", "abc")
    assert oct((tmp_path / "small" / "model.bin").stat().st_mode & 0o777) == "0o644"


def test_a_replacement_swaps_the_whole_folder_and_keeps_the_old_one_if_it_fails(tmp_path, monkeypatch):
    installed.install(staged(tmp_path, "small", "one"), tmp_path / "small")
    assert installed.install(staged(tmp_path, "small", "two"), tmp_path / "small") is True
    assert (tmp_path / "small" / "model.bin").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small"]

    staging = staged(tmp_path, "small", "three")

    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(installed.os, "rename", refuse)
    with pytest.raises(OSError):
        installed.install(staging, tmp_path / "small")
    assert (tmp_path / "small" / "model.bin").read_text() == "two"  # the old one is back, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["small", staging.name])  # pull() removes staging


def test_remove_leaves_nothing_behind(tmp_path):
    installed.install(staged(tmp_path, "small", "one"), tmp_path / "small")
    (tmp_path / "old.pt").write_bytes(b"pt")
    installed.remove(tmp_path / "small")
    installed.remove(tmp_path / "old.pt")
    assert list(tmp_path.iterdir()) == []


def test_one_pull_of_a_name_at_a_time_and_leftovers_are_cleared(tmp_path):
    left = installed.new_staging(tmp_path, "small")  # what a killed pull left
    other = installed.new_staging(tmp_path, "small.en")
    with installed.pull_lock(tmp_path, "small"):
        with pytest.raises(ModelInstallRefused, match="another"):
            with installed.pull_lock(tmp_path, "small"):
                pass
        assert installed.clear_leftovers(tmp_path, "small") == [left]
    assert other.exists()  # another name's pull is not ours to clear
    with installed.pull_lock(tmp_path, "small"):  # free again
        pass


@pytest.mark.parametrize("bad", ["", "../x", ".hidden", "a/b", "with space", "x.pt"])
def test_names_that_cannot_be_a_folder_are_refused(bad):
    with pytest.raises(ModelInstallRefused):
        installed.check_name(bad)


# --- what list shows ---------------------------------------------------------------------------------


def test_list_rows_join_the_daemons_view_and_the_folder():
    local = [installed.LocalModel("small", Path("/m/small"), 484_000_000, True, "Systran/faster-whisper-small",
                                  "536b0662742c02347bc0e980a01041f333bce120"),
             installed.LocalModel("extra", Path("/m/extra"), 10, False)]
    served = [ModelEntry("tiny.en", loaded=True, default=True, source="bundled", size_bytes=75_000_000),
              ModelEntry("small", loaded=True, multilingual=True, source="models_dir", size_bytes=1)]
    status = DaemonStatus.from_dict({"lanes": [LaneStatus("hot", "hot", "tiny.en", "idle").to_dict(),
                                               LaneStatus("cold-1", "cold", "small", "busy").to_dict()]})
    rows = {r["name"]: r for r in model_rows(local, served, status)}
    assert rows["small"]["loaded"] == ["cold-1"] and rows["small"]["size_bytes"] == 484_000_000
    assert rows["extra"]["served"] is False
    text = format_rows(list(rows.values()))
    assert "models_dir Systran/faster-whisper-small@536b0662" in text and "not served" in text
    assert "hot (default)" in text and "484 MB" in text
    offline = model_rows(local, None, None)  # no daemon: the folder alone, served unknown
    assert [r["served"] for r in offline] == [None, None] and "?" in format_rows(offline)
    assert "tiny.en" in BUNDLED


def test_rescan_and_model_entries_round_trip():
    entry = ModelEntry("small", source="models_dir", size_bytes=5)
    assert ModelEntry.from_dict(entry.to_dict()) == entry
    assert "source" not in ModelEntry("x").to_dict()  # what older clients read is unchanged
    result = RescanResult((entry,), ("small",), (), "/var/lib/whisperd/models")
    assert RescanResult.from_dict(result.to_dict()) == result
