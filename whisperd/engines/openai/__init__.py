"""The openai-whisper engine (PyTorch): the engine, checkpoint loading, the short
path, and the converter from CTranslate2 weights."""
