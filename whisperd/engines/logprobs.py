"""Per-token log probabilities (OpenAI's `include[]=logprobs`), measured the same way by both engines.

What a token's logprob is here: log p(token | audio, context, the text before it),
teacher-forced in one decoder pass over

    [sot_prev, context…, sot, language, task, no_timestamps, text tokens…]

and normalised over the text vocabulary (timestamps and end-of-text left out).
The context is what the decoder was given for that window: the prompt and the
previous windows' tokens. This is the pass whisper and faster-whisper run for
word timestamps - their word `probability` is the mean of these tokens'
probabilities - and CTranslate2's `Whisper.align` returns exactly it
(`text_token_probs`; checked against openai-whisper's PyTorch forward pass on
the same weights: equal to the third decimal).

Why not the decoder's own step scores: CTranslate2 returns them
(`return_logits_vocab`) only for greedy search, and the default is a beam of 5;
and a sampled window (temperature > 0) would report the sampling distribution
rather than the model's. Teacher forcing gives one definition for every decode,
at the cost of one decoder pass over the window's tokens (plus, in faster-whisper's
30 s path, which hides its encoder output, one encoder pass per window).

Pure helpers; the engines run the model.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

from whisperd.core.transcript import TokenLogprob


@functools.lru_cache(maxsize=1)
def byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet, reversed: the character a vocabulary entry uses → its byte.

    Hugging Face tokenizers (faster-whisper's) spell a token's bytes this way ("Ġquick"
    is b" quick"); tiktoken (openai-whisper's) gives the bytes directly.

    >>> bytes(byte_decoder()[c] for c in "Ġquick")
    b' quick'
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def bpe_bytes(piece: str) -> bytes:
    """A byte-level BPE vocabulary entry's bytes (see `byte_decoder`)."""
    table = byte_decoder()
    return bytes(table[c] for c in piece)


def token_logprobs(tokens: Sequence[int], logprobs: Sequence[float],
                   token_bytes: Callable[[int], bytes]) -> tuple[TokenLogprob, ...]:
    """Text tokens and their log probabilities as OpenAI reports them.

    A token may hold part of a multi-byte character: its `bytes` are exact, its
    `token` text shows the part as U+FFFD (joining the bytes gives the text back).

    >>> token_logprobs([1, 2], [-0.5, -0.25], {1: b" caf", 2: b"\\xc3\\xa9"}.__getitem__)[1]
    TokenLogprob(token='é', logprob=-0.25, bytes=(195, 169))
    """
    if len(tokens) != len(logprobs):
        raise ValueError(f"{len(tokens)} tokens but {len(logprobs)} log probabilities")
    out = []
    for token, logprob in zip(tokens, logprobs):
        raw = token_bytes(int(token))
        out.append(TokenLogprob(raw.decode("utf-8", errors="replace"), float(logprob), tuple(raw)))
    return tuple(out)


def start_sequence(previous: Sequence[int], sot_prev: int, sot_sequence: Sequence[int], n_text: int,
                   max_length: int = 448) -> list[int]:
    """What precedes a window's text in the teacher-forced pass, `no_timestamps` not included.

    The decoder was given `sot_prev` and the last half-context of the previous text
    (prompt and earlier windows), then the start of transcript; here as much of it as
    leaves room for the `n_text` tokens being scored (the model reads `max_length` at most).

    >>> s = start_sequence(list(range(300)), 9, [1, 2, 3], n_text=10)
    >>> s[:2], len(s)
    ([9, 77], 227)
    >>> len(start_sequence(list(range(300)), 9, [1, 2, 3], n_text=400)) + 1 + 400  # + no_timestamps + text
    448
    >>> start_sequence([], 9, [1, 2, 3], n_text=10)
    [1, 2, 3]
    """
    room = min(max_length // 2 - 1, max_length - n_text - len(sot_sequence) - 2)  # 2: sot_prev, no_timestamps
    kept = list(previous[-room:]) if previous and room > 0 else []
    return [sot_prev, *kept, *sot_sequence] if kept else list(sot_sequence)
