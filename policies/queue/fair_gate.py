"""The rule every fairness policy enforces at admission.

A gang may not take its group (tenant or queue) above the group's entitlement while another
group has a waiting gang that would still fit inside that other group's own entitlement.
Beyond-entitlement use (borrowing) is allowed only while nobody entitled is waiting: idle
capacity is lent, never taken from someone who asked for their share.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from phalanx.policies.resources import Resources, gang_demand
from phalanx.scheduler.gang import Gang
from phalanx.scheduler.interfaces import QueueContext


def entitled_waiter(
    ctx: QueueContext,
    group_of: Callable[[Gang], str],
    usage: Mapping[str, Resources],
    within_entitlement: Callable[[str, Resources], bool],
    exclude: str,
) -> str | None:
    """Name of a group other than ``exclude`` with a pending gang that fits inside that
    group's entitlement given its current ``usage``; None if there is none."""
    for gang in ctx.pending:
        group = group_of(gang)
        if group == exclude:
            continue
        if within_entitlement(group, usage.get(group, Resources()) + gang_demand(gang)):
            return group
    return None
