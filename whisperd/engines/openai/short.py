"""openai-whisper on a shorter audio context: the short path of `engine.py`.

whisper's encoder asserts a 1500-position input; `_encode_short` is its forward
pass with the positional embedding sliced to the mel's length. whisper's own
`DecodingTask` (beams, suppression, no-speech probability, compression ratio)
then decodes the result through `_ShortContext`, a view of the model whose
`dims` report the shorter context - whisper takes audio features as already
encoded only when their shape matches `dims`. Sizing and guard: `short_path.py`,
applied by `common.py`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from whisperd.core.constants import HOP_LENGTH
from whisperd.engines import short_path
from whisperd.engines.base import Options
from whisperd.engines.common import ShortDecode
from whisperd.engines.openai import logprobs

if TYPE_CHECKING:
    import torch
    from whisper.model import Whisper


class _ShortContext:
    """The model as whisper's decoder sees it on a shorter audio context.

    `DecodingTask` and `detect_language` treat audio features as already encoded
    only when their shape is (n_audio_ctx, n_audio_state); these `dims` say the
    short length, and everything else is the model itself.
    """

    def __init__(self, model: "Whisper", n_audio_ctx: int) -> None:
        import functools

        from whisper.decoding import detect_language

        self._model = model
        self.dims = dataclasses.replace(model.dims, n_audio_ctx=n_audio_ctx)
        self.detect_language = functools.partial(detect_language, self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def _encode_short(model: "Whisper", mel: "torch.Tensor") -> "torch.Tensor":
    """`AudioEncoder.forward` with the positional embedding cut to the mel's length."""
    import torch.nn.functional as F

    enc = model.encoder
    x = F.gelu(enc.conv1(mel))
    x = F.gelu(enc.conv2(x))
    x = x.permute(0, 2, 1)
    x = (x + enc.positional_embedding[: x.shape[1]]).to(x.dtype)
    for block in enc.blocks:
        x = block(x)
    return enc.ln_post(x)


def decode_short(
    model: "Whisper", audio: np.ndarray, options: Options, language: str | None, frames: int, cap: int,
    *, fp16: bool,
) -> ShortDecode | str:
    """One decode on a `frames`-long context of at most `cap` tokens, or why not.

    `language` is the model's code for the request's language (None: detect on
    the short context).
    """
    import torch
    from whisper.audio import log_mel_spectrogram
    from whisper.decoding import DecodingOptions, decode, detect_language
    from whisper.tokenizer import get_tokenizer

    dtype = torch.float16 if fp16 else torch.float32
    mel = log_mel_spectrogram(torch.from_numpy(audio), model.dims.n_mels,
                              padding=frames * HOP_LENGTH - len(audio), device=model.device)
    mel = mel[:, :frames].unsqueeze(0).to(dtype)
    with torch.no_grad():
        features = _encode_short(model, mel)
    view = _ShortContext(model, features.shape[1])
    if language is None:
        _, probs = detect_language(view, features)  # type: ignore[arg-type]
        language = max(probs[0], key=probs[0].get)
        if probs[0][language] < short_path.LANGUAGE_SURE:
            return "language unsure"
    tokenizer = get_tokenizer(model.is_multilingual, num_languages=model.num_languages,
                              language=language, task=options.task)
    prompt = tokenizer.encode(" " + options.prompt.strip()) if options.prompt else []
    result = decode(view, features, DecodingOptions(  # type: ignore[arg-type]
        task=options.task, language=language, beam_size=options.beam_size if options.beam_size > 1 else None,
        prompt=prompt or None, without_timestamps=True, sample_len=cap, fp16=fp16, temperature=0.0,
    ))[0]
    tokens = [t for t in result.tokens if t < tokenizer.eot]
    scored = logprobs.scored(model, tokenizer, result.audio_features, prompt, tokens) if options.logprobs else ()
    return ShortDecode(tokens, tokenizer.decode(tokens), result.avg_logprob, result.no_speech_prob, language, scored)
