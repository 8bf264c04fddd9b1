"""The examples in the pure modules' docstrings are tests too (they document the rules)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ("whisperd.daemon.policy", "whisperd.engines.short_path", "whisperd.core.chunking", "whisperd.engines.logprobs",
           "whisperd.core.model_names", "whisperd.daemon.resources", "whisperd.client.checksums",
           "whisperd.client.installed", "whisperd.client.pull",
           "whisperd.client.pcm", "whisperd_wyoming.chunks")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0, f"{name} lost its examples"
    assert result.failed == 0
