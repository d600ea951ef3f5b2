"""Benchmarks and comparison reports against baselines and published results."""
