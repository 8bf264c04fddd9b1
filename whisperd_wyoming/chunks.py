"""What each `transcript-chunk` carries: the text that became stable since the last one.

The daemon's partials say how much of an utterance's text will never change
(`Partial.stable_text`). A chunk carries only what is new in it - spaces included,
so the chunks simply concatenate - and after `audio-stop` one last chunk carries
the rest of the final text. So the chunks of an utterance, joined with no
separator, are exactly its final text (`Final.text`, which starts with every word
the daemon ever called stable) - a preview: the `transcript` itself is the final
decode's own text (`Final.decoded`), which may correct a word an early partial got
wrong (the command is what Home Assistant acts on).

    >>> t = StableText()
    >>> t.advance("And so"), t.advance("And so my fellow"), t.advance("And so my fellow")
    ('And so', ' my fellow', '')
    >>> t.rest("And so my fellow Americans.")
    ' Americans.'
"""

from __future__ import annotations

import logging

log = logging.getLogger("whisperd.wyoming")


class StableText:
    def __init__(self) -> None:
        self.sent = ""

    def advance(self, stable: str) -> str:
        """The newly stable text of a partial ('' when nothing is new)."""
        if not stable.startswith(self.sent):
            # Stable text never changes (LocalAgreement-2); if a daemon ever broke that, say
            # nothing rather than send a chunk that contradicts the ones before.
            log.warning("a partial's stable text does not continue the text already sent; skipped")
            return ""
        new, self.sent = stable[len(self.sent):], stable
        return new

    def rest(self, final: str) -> str:
        """The final text after what the chunks already carried."""
        return self.advance(final)
