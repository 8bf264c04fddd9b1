"""include[]=logprobs on openai-whisper: the text tokens scored in one teacher-forced decoder pass.

The same measure as faster-whisper's (`whisperd/engines/logprobs.py`), on the audio
features whisper's decode already computed (`DecodingResult.audio_features`), so it
costs one decoder pass per window and no encoder pass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from whisperd.core.transcript import TokenLogprob
from whisperd.engines import logprobs

if TYPE_CHECKING:
    import torch
    from whisper.model import Whisper
    from whisper.tokenizer import Tokenizer


def score(model: "Whisper", tokenizer: "Tokenizer", audio_features: "torch.Tensor", previous: Sequence[int],
          text: Sequence[int]) -> list[float]:
    """log p(each of `text` | the audio, `previous` text, the tokens before it), over text tokens only."""
    import torch

    if not text:
        return []
    start = logprobs.start_sequence(previous, tokenizer.sot_prev, tokenizer.sot_sequence, n_text=len(text),
                                    max_length=model.dims.n_text_ctx)
    start.append(tokenizer.no_timestamps)
    tokens = torch.tensor([[*start, *text]], device=audio_features.device)
    with torch.no_grad():
        logits = model.decoder(tokens, audio_features.unsqueeze(0))[0]
    # The logits at position i predict token i + 1.
    picked = logits[len(start) - 1 : len(start) - 1 + len(text), : tokenizer.eot].float().log_softmax(dim=-1)
    return picked[torch.arange(len(text)), torch.tensor(text, device=picked.device)].tolist()


def scored(model: "Whisper", tokenizer: "Tokenizer", audio_features: "torch.Tensor", previous: Sequence[int],
           text: Sequence[int]) -> tuple[TokenLogprob, ...]:
    return logprobs.token_logprobs(text, score(model, tokenizer, audio_features, previous, text),
                                   tokenizer.encoding.decode_single_token_bytes)
