"""Benchmarks and chaos runs against real processes (`python -m bench.soak`)."""
