"""Queue policies: which pending gang is tried next, and whether it may start now."""
