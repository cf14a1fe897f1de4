"""Benchmarks: `python -m loadtests.bench.NAME --help`; each prints one JSON line."""
