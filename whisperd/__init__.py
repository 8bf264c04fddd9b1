"""whisperd: a private, local Whisper speech-to-text daemon."""

__version__ = "0.1.0"
