"""The OpenAI-compatible HTTP shim in front of the whisperd socket.

It imports the protocol, the socket client and the renderers - never an engine,
torch or ctranslate2 - so it starts in milliseconds.
"""
