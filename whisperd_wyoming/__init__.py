"""whisperd-wyoming: the Wyoming speech-to-text protocol (Home Assistant's) in front of whisperd.

A front like the shim: it talks to the daemon over its socket only (`whisperd.client`,
the live stream), never loads a model, and imports `whisperd.core` and
`whisperd.client` alone (import-linter holds that wall). `docs/wyoming.md` describes
what it answers and how Home Assistant uses it.
"""
