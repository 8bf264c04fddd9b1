"""Whisper's temperature fallback, without re-decoding speech that really repeats itself.

Whisper re-decodes a 30 s window at temperatures 0.2, 0.4 ... 1.0 when the text
compresses too well (ratio > 2.4: "a loop") or the model is unsure. A speaker
who says the same sentence three times in one window trips the ratio too, and
then the window is decoded six times for the same words (measured: 88 s of one
real speech said 8 times took 2-3x as long as the words needed).

So when the greedy decode fails *only* the ratio - the model is confident -
and it is no decoder loop (no short n-gram said three times in a row), one
sampled decode at the next temperature checks it: if it says the same words,
they are in the audio, and the greedy decode stands (two decodes, not six).
If the sampled decode differs but is itself confident, loop-free and repetitive
(the greedy one stopped short of the last repetition, say), the likelier of the
two stands - Whisper's own final choice, four decodes sooner. Otherwise the
fallback goes on as Whisper's does. A pure rule (`settle`) and a
wrapper for faster-whisper's `WhisperModel.generate_with_fallback`.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from typing import Any, Callable, Sequence

from whisperd.engines.short_path import repeated_ngram

# Two decodes that share this much of their words say the same thing.
AGREEMENT = 0.9

# faster-whisper's (result, avg_logprob, temperature, compression_ratio)
Decode = tuple[Any, float, float, float]
Generate = Callable[[Any, list, Any, Any], Decode]


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def agree(a: str, b: str) -> bool:
    """Whether two decodes say the same words (punctuation and case aside).

    >>> agree("Ask not, what your country can do.", "ask not what your country can do")
    True
    >>> agree("ask not what your country can do", "thank you thank you thank you")
    False
    """
    wa, wb = _words(a), _words(b)
    if not wa and not wb:
        return True
    return difflib.SequenceMatcher(None, wa, wb, autojunk=False).ratio() >= AGREEMENT


def needs_fallback(ratio: float, avg_logprob: float, no_speech_prob: float, options: Any) -> bool:
    """Whisper's own test (faster-whisper's `generate_with_fallback`)."""
    bad = options.compression_ratio_threshold is not None and ratio > options.compression_ratio_threshold
    unsure = options.log_prob_threshold is not None and avg_logprob < options.log_prob_threshold
    silence = (options.no_speech_threshold is not None and no_speech_prob > options.no_speech_threshold
               and unsure)
    return (bad or unsure) and not silence


def only_repetitive(ratio: float, avg_logprob: float, text_tokens: Sequence[int], options: Any) -> bool:
    """Fails the ratio alone, confidently, and is no decoder loop: worth one check, not five."""
    if options.compression_ratio_threshold is None or ratio <= options.compression_ratio_threshold:
        return False
    if options.log_prob_threshold is not None and avg_logprob < options.log_prob_threshold:
        return False
    return repeated_ngram(text_tokens) is None


def agreeing_fallback(generate: Generate, count: Callable[[str], None]) -> Generate:
    """`generate` (a bound `generate_with_fallback`) with the check above in front."""

    def run(encoder_output: Any, prompt: list, tokenizer: Any, options: Any) -> Decode:
        temperatures = list(options.temperatures)
        if len(temperatures) < 2 or options.compression_ratio_threshold is None:
            return generate(encoder_output, prompt, tokenizer, options)

        def at(temps: list[float]) -> Decode:
            return generate(encoder_output, prompt, tokenizer, dataclasses.replace(options, temperatures=temps))

        def text_of(decode: Decode) -> tuple[str, list[int]]:
            tokens = [t for t in decode[0].sequences_ids[0] if t < tokenizer.eot]
            return tokenizer.decode(tokens), tokens

        first = at(temperatures[:1])
        result, avg_logprob, _, ratio = first
        if not needs_fallback(ratio, avg_logprob, result.no_speech_prob, options):
            return first
        count("temperature_fallbacks")
        tried = [first]
        rest = temperatures[1:]
        text, tokens = text_of(first)
        if only_repetitive(ratio, avg_logprob, tokens, options):
            second = at(rest[:1])
            count("fallback_decodes")
            second_text, second_tokens = text_of(second)
            if agree(text, second_text):
                count("repetition_confirmed")
                return first
            if only_repetitive(second[3], second[1], second_tokens, options):
                # Two confident, loop-free decodes that both repeat: the audio repeats, and one
                # of them missed a little of it (the greedy one often stops short). Whisper would
                # decode four more times and then take the likelier; take it now.
                count("repetition_confirmed")
                return max(first, second, key=lambda d: d[1])
            tried.append(second)
            rest = rest[1:]
        if not rest:
            return _best(tried, options)
        last = at(rest)
        count("fallback_decodes")  # at least one; faster-whisper does not say how many
        if not needs_fallback(last[3], last[1], last[0].no_speech_prob, options):
            return last
        return _best([*tried, last], options)

    return run


def _best(decodes: list[Decode], options: Any) -> Decode:
    """Whisper's choice when every temperature failed: the most likely below the ratio."""
    threshold = options.compression_ratio_threshold
    below = [d for d in decodes if threshold is None or d[3] <= threshold]
    return max(below or decodes, key=lambda d: d[1])
