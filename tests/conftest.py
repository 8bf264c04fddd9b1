"""Shared fixtures: one real daemon + shim per engine for the whole session."""

from __future__ import annotations

import pytest

from testing.stack import Stack

ENGINES = ("faster-whisper", "openai-whisper")


@pytest.fixture(scope="session")
def fw_stack():
    stack = Stack("--engine", "faster-whisper")
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def ow_stack():
    stack = Stack("--engine", "openai-whisper")
    yield stack
    stack.stop()


@pytest.fixture(scope="session", params=ENGINES)
def stack(request):
    """The real stack, once per engine."""
    return request.getfixturevalue("fw_stack" if request.param == "faster-whisper" else "ow_stack")


@pytest.fixture()
def openai_client(fw_stack):
    from openai import OpenAI

    with OpenAI(base_url=fw_stack.url + "/v1", api_key="unused", max_retries=0, timeout=120) as c:
        yield c
