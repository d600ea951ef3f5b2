"""Placement scorers: how candidate nodes (and GPUs, for shares) rank for one gang member."""
