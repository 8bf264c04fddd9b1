"""The whisperd daemon: the socket server, the pool of lanes and its policy, models,
audio decoding, systemd integration. Knows engines only through `whisperd.engines.base`
and `whisperd.engines.load_engine`.
"""
