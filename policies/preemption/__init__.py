"""Gang-aware preemption: which whole gangs to evict so that a waiting gang can start."""
