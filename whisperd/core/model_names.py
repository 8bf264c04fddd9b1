"""Model names every program agrees on (the daemon resolves them; the shim lists them)."""

from __future__ import annotations

# Names OpenAI clients send that mean "the default model": `whisper-1`, and the
# newer transcription models that agent frameworks and voice SDKs hard-code.
DEFAULT_ALIASES = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")
