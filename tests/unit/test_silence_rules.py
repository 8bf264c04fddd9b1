"""The silence policy's pure rules: no model (what the real model makes of silence: tests/stack/test_silence.py)."""

from __future__ import annotations

import numpy as np
import pytest

from whisperd.engines.silence import is_digital_silence, is_silence_segment


def test_digital_silence():
    assert is_digital_silence(np.zeros(16000, np.float32))
    assert is_digital_silence(np.zeros(0, np.float32))
    assert not is_digital_silence(np.full(16000, 0.01, np.float32))


@pytest.mark.parametrize(
    "text, nsp, logprob, dropped",
    [
        (" You", 0.944, -0.943, True),  # tiny.en on 5 s of zeros
        (" .", 0.946, -0.759, True),  # white noise
        (" ...", 0.1, -0.2, True),  # no word at all
        (" The quick brown fox.", 0.154, -0.549, False),
        (" Tomorrow we will visit our grandmother.", 0.786, -0.424, False),  # real speech, short window
    ],
)
def test_silence_segments(text, nsp, logprob, dropped):
    assert is_silence_segment(text, nsp, logprob, threshold=0.6) is dropped
