"""Word error rate against a known script, after a small text normalizer (stdlib only).

The normalizer makes the comparison about words, not typography: lowercase,
apostrophes dropped inside words ("don't" → "dont"), every other punctuation
mark or symbol is a word break. Numbers stay as they are written, so "ten" and
"10" count as different words - the scripts here spell numbers as words, as
Whisper does for small numbers. One spelling variant is folded: "alright" is
"all right" (the same two words; references and models write either).

    >>> normalize("The quick, brown fox - it's 10 o'clock!")
    ['the', 'quick', 'brown', 'fox', 'its', '10', 'oclock']
    >>> word_errors("the quick brown fox", "the quick brown fox")
    (0, 4)
    >>> word_errors("the quick brown fox", "a quick brown fox jumps")  # 1 substitution + 1 insertion
    (2, 4)
    >>> round(wer("the quick brown fox", "quick brown"), 2)  # 2 deletions
    0.5
    >>> wer("", "")
    0.0
    >>> word_errors("alright, thanks", "all right thanks")
    (0, 3)

Run the examples with `python -m doctest bench/wer.py`.
"""

from __future__ import annotations

import unicodedata

_APOSTROPHES = "'\u2019\u02bc"


def normalize(text: str) -> list[str]:
    """Text → lowercase words without punctuation."""
    out = []
    for ch in text.lower():
        if ch in _APOSTROPHES:
            continue
        # Unicode categories P* (punctuation) and S* (symbols) break words.
        out.append(" " if unicodedata.category(ch)[0] in "PS" else ch)
    words: list[str] = []
    for word in "".join(out).split():
        words.extend(_SAME_WORDS.get(word, (word,)))
    return words


_SAME_WORDS = {"alright": ("all", "right")}


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance on words: substitutions + deletions + insertions."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i]
        for j, h in enumerate(hyp, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h)))
        prev = cur
    return prev[-1]


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word errors, words in the reference), both normalized."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    return edit_distance(ref, hyp), len(ref)


def wer(reference: str, hypothesis: str) -> float:
    """Word errors ÷ reference words (0.0 is perfect; can pass 1.0 with many insertions)."""
    errors, n = word_errors(reference, hypothesis)
    if n == 0:
        return 0.0 if errors == 0 else float("inf")
    return errors / n
