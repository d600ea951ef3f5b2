"""Trace-driven discrete-event simulator, trace loaders, metrics, reports and sweeps."""
