"""The temperature fallback that confirms repetition (engines/fallback.py), with a fake decoder."""

from __future__ import annotations

from dataclasses import dataclass, field

from whisperd.engines.fallback import agreeing_fallback

EOT = 1000


@dataclass
class Result:
    sequences_ids: list
    no_speech_prob: float = 0.0


@dataclass
class Opts:
    temperatures: tuple = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    compression_ratio_threshold: float | None = 2.4
    log_prob_threshold: float | None = -1.0
    no_speech_threshold: float | None = 0.6


class Tokenizer:
    eot = EOT

    def decode(self, tokens):
        return " ".join(f"w{t}" for t in tokens)


@dataclass
class FakeDecoder:
    """What each temperature decodes to: (tokens, avg_logprob, compression ratio)."""

    by_temperature: dict
    calls: list = field(default_factory=list)

    def __call__(self, encoder_output, prompt, tokenizer, options):
        temps = list(options.temperatures)
        self.calls.append(temps)
        picked = None
        for t in temps:  # Whisper's loop: the first that passes, else the likeliest
            tokens, logprob, ratio = self.by_temperature[t]
            picked = (Result([tokens]), logprob, t, ratio)
            if ratio <= 2.4 and logprob >= -1.0:
                return picked
        return picked


SENTENCE = list(range(1, 21))  # 20 different tokens: no short n-gram loop
LOOP = [7, 8] * 12  # "w7 w8 w7 w8 ...": a decoder loop


def run(by_temperature):
    decoder = FakeDecoder(by_temperature)
    counts: list[str] = []
    out = agreeing_fallback(decoder, counts.append)(None, [], Tokenizer(), Opts())
    return out, decoder.calls, counts


def test_a_decode_that_passes_costs_one_call():
    out, calls, counts = run({0.0: (SENTENCE, -0.2, 1.5)})
    assert out[2] == 0.0 and calls == [[0.0]] and counts == []


def test_confident_repetition_confirmed_by_one_sampled_decode_stands():
    repeated = SENTENCE * 3
    out, calls, counts = run({0.0: (repeated, -0.2, 3.0), 0.2: (repeated, -0.3, 3.0)})
    assert out[2] == 0.0 and calls == [[0.0], [0.2]]  # two decodes, not six
    assert counts == ["temperature_fallbacks", "fallback_decodes", "repetition_confirmed"]


def test_two_confident_repetitive_decodes_that_differ_give_the_likelier():
    out, calls, _ = run({0.0: (SENTENCE * 2, -0.4, 2.8), 0.2: (SENTENCE * 3, -0.2, 3.0)})
    assert out[2] == 0.2 and len(calls) == 2  # the sampled one: it heard the third repetition


def test_a_decoder_loop_goes_on_through_every_temperature():
    table = {t: (LOOP, -0.1, 5.0) for t in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)}
    table[0.6] = (SENTENCE, -0.5, 1.5)
    out, calls, counts = run(table)
    assert calls == [[0.0], [0.2, 0.4, 0.6, 0.8, 1.0]]  # no confirmation attempt for a loop
    assert out[2] == 0.6 and "repetition_confirmed" not in counts


def test_an_unsure_decode_falls_back_as_whisper_does():
    table = {0.0: (SENTENCE, -1.5, 1.5), 0.2: (SENTENCE, -0.5, 1.5)}
    out, calls, _ = run(table)
    assert out[2] == 0.2 and calls == [[0.0], [0.2, 0.4, 0.6, 0.8, 1.0]]
