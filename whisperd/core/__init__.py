"""The vocabulary every whisperd program shares: errors, the wire protocol, the
transcript types and replies, output formats, languages, settings and logging.

Stdlib only, and nothing else of the project: the daemon, the engines, the
client, the shim and the other fronts all import it (import-linter enforces it).
"""
