"""Which words of a growing utterance's transcript will never change: LocalAgreement-2.

A live utterance is decoded again and again as its audio grows. Each decode is a
hypothesis; the words two hypotheses in a row agree on, from the start, are
*stable*: they are sent as final text and never taken back (Macháček et al. 2023,
"Turning Whisper into Real-Time Transcription System"). The rest is shown as
*unstable* and may change with the next decode.

Words are compared exactly but for case, so a comma that becomes a full stop keeps
its word unstable until two decodes agree on it. Words in the last `HOLD_S` of the
audio a hypothesis heard stay unstable too (where a word lies is estimated from its
place among the hypothesis's words): a decode of audio that stops mid-word agrees
with the next one on the wrong word often enough ("asked not" for "ask not", on
JFK) to cost finals their accuracy; measured on real speech (docs/live.md), the
hold cut the words agreed wrongly without making stable text much later. Stable words keep the spelling
they were first agreed in: every later hypothesis (the final one too) is joined
after them, at the place its own words line up with them. Stdlib only: the
daemon runs it, and its rule is documented in `docs/live.md`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from difflib import SequenceMatcher


def words_of(text: str) -> list[str]:
    return text.split()


def _key(word: str) -> str:
    return word.casefold()


def common_prefix(a: list[str], b: list[str]) -> int:
    """How many words `a` and `b` share from the start.

    >>> common_prefix("And so my".split(), "And so, my fellow".split())
    1
    """
    n = 0
    for x, y in zip(a, b):
        if _key(x) != _key(y):
            break
        n += 1
    return n


def tail_after(stable: list[str], hypothesis: list[str]) -> list[str]:
    """The words of `hypothesis` that come after the `stable` words.

    Where the hypothesis starts with the stable words, what follows them; where it
    differs (a later decode heard the start differently), what follows the place
    its words line up with the end of the stable ones.

    >>> tail_after("ask not".split(), "Ask not what your".split())
    ['what', 'your']
    >>> tail_after("ask not what".split(), "Ask, not what your country".split())
    ['your', 'country']
    >>> tail_after("one two three".split(), "uno dos tres cuatro".split())
    ['cuatro']
    """
    if not stable:
        return list(hypothesis)
    k = common_prefix(stable, hypothesis)
    if k == len(stable):
        return hypothesis[k:]
    matcher = SequenceMatcher(None, [_key(w) for w in stable], [_key(w) for w in hypothesis], autojunk=False)
    blocks = [b for b in matcher.get_matching_blocks() if b.size]
    if not blocks:
        return hypothesis[len(stable):]  # nothing lines up: past their length is the best guess
    last = blocks[-1]
    # Stable words after the last matching run stand for as many hypothesis words.
    end = last.b + last.size + (len(stable) - last.a - last.size)
    return hypothesis[min(end, len(hypothesis)):]


HOLD_S = 1.0


def heard_words(n_words: int, stable: int, audio_s: float | None, hold_s: float = HOLD_S) -> int:
    """How many of a hypothesis's words after the `stable` ones lie before its last `hold_s` of audio.

    >>> heard_words(10, 2, 5.0)  # 10 words in 5 s: those of the first 4 s may become stable
    6
    >>> heard_words(10, 2, None)  # no audio length given: no hold
    8
    """
    if audio_s is None or audio_s <= 0:
        return n_words - stable
    return max(0, int(n_words * max(0.0, audio_s - hold_s) / audio_s) - stable)


@dataclass
class Agreement:
    """One utterance's hypotheses, and the words that are stable so far."""

    stable: list[str] = field(default_factory=list)
    _last_tail: list[str] | None = None  # the previous hypothesis, after the stable words

    def update(self, hypothesis: str, audio_s: float | None = None) -> bool:
        """Take a new hypothesis of the whole utterance so far (`audio_s` of audio);
        True when the stable words grew."""
        words = words_of(hypothesis)
        tail = tail_after(self.stable, words)
        grew = False
        if self._last_tail is not None:
            n = min(common_prefix(self._last_tail, tail), heard_words(len(words), len(self.stable), audio_s))
            if n:
                self.stable.extend(tail[:n])
                tail = tail[n:]
                grew = True
        self._last_tail = tail
        return grew

    @property
    def unstable(self) -> list[str]:
        return list(self._last_tail or [])

    def stable_text(self) -> str:
        return " ".join(self.stable)

    def text(self) -> str:
        """The stable words, then the latest hypothesis's others."""
        return " ".join([*self.stable, *self.unstable])

    def final(self, hypothesis: str) -> str:
        """The utterance's final text: the stable words, then the final hypothesis after them.
        Starts with `stable_text()`, so what was sent as stable is never taken back."""
        return " ".join([*self.stable, *tail_after(self.stable, words_of(hypothesis))])


def stable_chars(text: str, stable: str) -> int:
    """How many characters of `text` are stable (`text` starts with `stable`)."""
    return len(stable) if text.startswith(stable) else 0
