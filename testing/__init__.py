"""Helpers shared by the tests and the benchmarks: real stacks (`stack`) and the speech
fixtures with their judges (`speech`). Not part of the installed package."""
