"""The official `openai` Node SDK as a client: another HTTP stack (undici, its own multipart
writer and SSE reader) against the real shim and daemon.

The SDK is installed by `make test` (`make node-sdk`: `npm ci` in tests/clients/node) when
npm is present; `.ci/run` installs Node first. Without Node the test is skipped and says so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from testing.speech import FIXTURES, FOX_TEXT, LONG_TEXT, SPANISH_TEXT, word_recall

CLIENT_DIR = Path(__file__).parents[1] / "clients" / "node"
NODE = shutil.which("node")


@pytest.fixture(scope="module")
def node_results(fw_stack) -> dict:
    if NODE is None or not (CLIENT_DIR / "node_modules" / "openai").is_dir():
        pytest.skip("Node.js or tests/clients/node/node_modules missing: run `make node-sdk` (needs node and npm)")
    done = subprocess.run([NODE, str(CLIENT_DIR / "sdk_check.mjs"), fw_stack.url + "/v1", str(FIXTURES)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def _ok(results: dict, name: str):
    assert "ok" in results[name], results[name]
    return results[name]["ok"]


def _refused(results: dict, name: str, status: int, code: str, param: str | None) -> dict:
    outcome = results[name]
    assert outcome.get("status") == status, outcome
    err = outcome["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert (err["code"], err["param"], err["type"]) == (code, param, "invalid_request_error"), err
    return err


def test_node_sdk_response_formats(node_results):
    assert word_recall(FOX_TEXT, _ok(node_results, "json")["text"]) >= 0.8
    text = _ok(node_results, "text")
    assert isinstance(text, str) and word_recall(FOX_TEXT, text) >= 0.8
    srt = _ok(node_results, "srt")
    assert srt.startswith("1\n00:00:00,000 --> 00:00:0") and word_recall(FOX_TEXT, srt) >= 0.8


def test_node_sdk_verbose_json_with_words_from_a_webm_upload(node_results):
    verbose = _ok(node_results, "verbose")
    assert verbose["language"] == "english" and verbose["duration"] > 3
    assert word_recall(FOX_TEXT, verbose["text"]) >= 0.8
    assert verbose["segments"] and len(verbose["words"]) >= 8
    starts = [w["start"] for w in verbose["words"]]
    assert starts == sorted(starts) and verbose["words"][-1]["end"] <= verbose["duration"] + 0.1


def test_node_sdk_translation_and_models(node_results):
    english = _ok(node_results, "translation")["text"]
    assert english and word_recall(SPANISH_TEXT, english) < 0.5  # English out, not the Spanish words
    assert {"whisper-1", "gpt-4o-mini-transcribe", "tiny.en", "base"} <= set(_ok(node_results, "models"))


def test_node_sdk_errors_are_openai_errors(node_results):
    err = _refused(node_results, "not_audio", 400, "audio_decode_failed", "file")
    assert "could not decode audio" in err["message"]
    _refused(node_results, "bad_temperature", 400, "invalid_parameter", "temperature")


def test_node_sdk_streaming(node_results):
    events = _ok(node_results, "stream")
    assert [e["type"] for e in events[:-1]] == ["transcript.text.delta"] * (len(events) - 1) and len(events) >= 3
    done = events[-1]
    assert done["type"] == "transcript.text.done"
    assert "".join(e["delta"] for e in events[:-1]).strip() == done["text"]
    assert word_recall(LONG_TEXT, done["text"]) >= 0.8
