"""Scheduling policies: queue ordering, fairness, quotas, backfill, preemption, scoring."""
