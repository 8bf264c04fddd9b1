"""A real human recording (fixtures/jfk.wav: old broadcast audio, hiss and crowd) through
the whole stack, on both engines and both decoding paths.

The rest of the suite hears synthetic speech; this is the check that the service does the
same for a person speaking into a microphone.
"""

from __future__ import annotations

from testing.speech import JFK_FILE, JFK_TEXT, word_recall, words
from tests.stack.test_api_transcribe import sdk


def test_a_real_recording_on_the_short_path(stack):
    """11 s: under the short path's limit, so the default request takes it (guarded)."""
    with sdk(stack) as client:
        result = client.audio.transcriptions.create(model="whisper-1", file=JFK_FILE)
    assert word_recall(JFK_TEXT, result.text) >= 0.9, result.text
    assert len(words(result.text)) <= len(words(JFK_TEXT)) + 3, result.text  # nothing invented


def test_a_real_recording_on_the_30_s_path_with_word_timestamps(stack):
    """Word timestamps take the 30 s path: the same words, each inside the recording."""
    with sdk(stack) as client:
        result = client.audio.transcriptions.create(model="whisper-1", file=JFK_FILE, response_format="verbose_json",
                                                    timestamp_granularities=["word"])
    assert word_recall(JFK_TEXT, result.text) >= 0.9, result.text
    assert result.duration == 11.0
    assert len(result.words) >= len(words(JFK_TEXT)) - 2
    for w in result.words:
        assert 0.0 <= w.start <= w.end <= result.duration + 0.05, w
    assert result.words[0].start < 1.0  # "And" is said at once
    assert result.words[-1].end > 8.0  # "country" closes the clip
