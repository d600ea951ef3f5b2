"""Why a gang is not running: one set of reason codes.

The placement engine names the constraint that failed (:attr:`Unplaceable.constraint`), the
scheduling cycle says why a gang it did not start waits, and the extender puts the same code
into the message kube-scheduler shows in the pod's events. Users and tests can then tell apart
what a bare "does not fit" hides: a gang that never fits this cluster (kube-scheduler should stop
retrying it), one that fits once something finishes, one whose room exists but is scattered
over nodes too full to hold a member, and one that only waits its turn.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    # -- the placement engine: nothing fits now (Unplaceable.constraint)
    CAPACITY = "capacity"
    """Not enough free room now (GPUs, or members' worth of them, in the whole cluster)."""
    FRAGMENTED = "fragmented"
    """Enough free GPUs in total, but no node (or NVLink domain) has room for a member."""
    CPU_MEMORY = "cpu_memory"
    """Free GPUs, but not the cpu or memory that goes with them."""
    REQUIRED_LEVEL = "required_level"
    """No domain of the required level has room for the whole gang."""
    NVLINK_GROUP = "nvlink_group"
    """Room for the members, but not for their NVLink groups inside NVLink domains."""
    PACKING = "packing"
    """Each kind of member fits, the fast search found no packing of all of them together."""
    TIME_LIMIT = "time_limit"
    """The exact solver ran out of time without a placement."""
    # -- the placement engine: no node passes a static filter (never changes with load)
    GPU = "gpu"
    GPU_PRODUCT = "gpu_product"
    NODE_SELECTOR = "node_selector"
    TAINTS = "taints"
    # -- the scheduling cycle
    QUOTA = "quota"
    """The queue policy's admission refused it (quota, fair share)."""
    WAITING_BEHIND = "waiting_behind"
    """Its queue position: a gang ahead of it is blocked (strict order, backfill)."""
    ALREADY_PLACED = "already_placed"
    LINK_HOLD = "link_hold"
    """It fits now, but only on slower links than it would get on the empty cluster; a permit
    plugin holds it for a better domain for a bounded time (:mod:`policies.permit.link_hold`)."""
    # -- the extender
    WAITING_FOR_MEMBERS = "waiting_for_members"
    """Fewer pods than its quorum exist (k/N present)."""
    NEVER_FITS = "never_fits"
    """Even with nothing else running the cluster could not hold it."""
    INVALID_SPEC = "invalid_spec"
    """The gang or a member asks for something malformed (an unknown level, a bad value)."""
    RESERVED = "reserved"
    """Planned: its node is reserved and nominated, the member retries until offered it."""
    PREEMPTING = "preempting"
    """Planned on room that gangs it preempted are still leaving (evicted, not yet gone)."""
    PREEMPTED = "preempted"
    """Evicted whole to make room for a gang the preemption policy put first."""
    BIND_BARRIER = "bind_barrier"
    """Members wait at bind until every planned member of the gang has reached it."""


NEVER_FITS_CONSTRAINTS = frozenset(
    {
        Reason.CAPACITY,
        Reason.CPU_MEMORY,
        Reason.REQUIRED_LEVEL,
        Reason.NVLINK_GROUP,
        Reason.GPU,
        Reason.GPU_PRODUCT,
        Reason.NODE_SELECTOR,
        Reason.TAINTS,
    }
)
"""Constraints :func:`scheduler.feasibility.never_fits` can prove on the empty cluster."""


def code_of(constraint: str) -> Reason:
    """The reason code of an engine constraint name (``capacity`` for one it does not know)."""
    try:
        return Reason(constraint)
    except ValueError:
        return Reason.CAPACITY
