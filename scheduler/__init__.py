"""The scheduling core: gangs, the allocation ledger, placement and the scheduling cycle."""
