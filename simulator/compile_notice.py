"""Is numba about to compile the placement kernels?

The kernels are compiled on first use and cached on disk (``cache=True``), so the first run
on a machine spends seconds compiling before the first job is placed, with nothing on the
screen. A newcomer takes that pause for a hang; the commands print a one-line notice when the
cache holds no compiled version of the kernels every run uses.
"""

from __future__ import annotations

from typing import Any

NOTICE = "compiling placement kernels (first run on this machine only, a few seconds)..."


def _dispatchers() -> list[Any]:
    """The kernels every simulation calls: member capacity, domain totals and single-node
    costs for placement, FGD's expected fragmentation for the fragmentation metric. Others
    (fractional shares, NVLink units, the FGD scorer's) compile only when a run needs them."""
    from phalanx.policies.scoring import fgd_kernels
    from phalanx.scheduler import kernels

    return [
        kernels.whole_member_capacity,
        kernels.domain_totals,
        kernels.single_node_costs,
        fgd_kernels.state_fragmentation,
        fgd_kernels.expected_fragmentation,
    ]


def kernels_cold() -> bool:
    """True when some kernel every run uses has no fresh compiled version in numba's cache
    (none yet, or one made from other source or by another numba version).

    Reads numba's cache index through its private API; if that ever changes, this answers
    False, so the worst case is a missing notice, never a failed run.
    """
    try:
        return any(not d._cache._cache_file._load_index() for d in _dispatchers())
    except Exception:  # numba internals: any failure means "cannot tell"
        return False
