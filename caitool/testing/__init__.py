"""Test helpers for caitool: a local fake of the OpenAI and Anthropic HTTP APIs (`.fake_server`).

Nothing here is imported by the CLI; it is used by the test suite and the benchmarks only.
"""
