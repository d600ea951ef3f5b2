"""The planner's read-only views: ``/debug/state`` (:func:`snapshot`) and the gauges of
``/metrics`` (:func:`gauges`). Kept apart from the planner's decisions (``extender/planner.py``),
which they only read, under the planner's lock."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from phalanx.extender.gangs.ref import SINGLETON_SOURCE
from phalanx.extender.records import GangRecord, natural_key
from phalanx.scheduler.state import HoldingPhase
from phalanx.topology.compiled import CompiledCluster

if TYPE_CHECKING:
    from phalanx.extender.planner import Planner


def snapshot(planner: Planner) -> dict[str, Any]:
    """Gangs, plans and free capacity for /debug/state."""
    with planner.lock:
        c = planner.compiled
        now = planner.clock()
        gangs = []
        for gang in sorted(planner.gangs.values(), key=lambda g: g.key):
            if gang.ref.source == SINGLETON_SOURCE and not gang.plans and not gang.waiting:
                continue
            gangs.append(
                {
                    "key": gang.key,
                    "source": gang.ref.source,
                    "phase": phase(planner, gang),
                    "quorum": gang.ref.min_member,
                    "members": sorted(gang.members, key=natural_key),
                    "bound": sorted(
                        (p.name for p in gang.members.values() if p.node), key=natural_key
                    ),
                    "waiting": gang.waiting,
                }
            )
        plans = []
        external = set(planner.external.values())
        for ledger_key, h in sorted(planner.state.holdings.items()):
            if ledger_key in external:
                continue
            expires = None if math.isinf(h.expires_at_s) else round(h.expires_at_s - now, 3)
            plans.append(
                {
                    "key": ledger_key,
                    "phase": h.phase.value,
                    "expires_in_s": expires,
                    "level": h.placement.level,
                    "domain": h.placement.domain,
                    "members": [
                        {
                            "pod": m.member,
                            "node": m.node,
                            "gpus": list(m.gpus),
                            "rank": m.rank,
                            "bound": m.member in h.bound_members,
                        }
                        for m in h.placement.members
                    ],
                }
            )
        return {
            "gangs": gangs,
            "reservations": plans,
            "external_pods": len(planner.external),
            "overcommitted": dict(planner.overcommitted),
            "capacity": {
                "nodes": c.n_nodes,
                "gpus": int(c.gpu_usable.sum()),
                "free_gpus": int(c.free_gpu_count.sum()),
                "gpu_allocation_ratio": round(c.gpu_allocation_ratio(), 6),
                "largest_free_domain_gpus": largest_free_by_level(c),
            },
            "stats": vars(planner.stats).copy(),
        }


def gauges(planner: Planner) -> dict[str, float]:
    """Gang counts by phase and GPU allocation, for /metrics."""
    with planner.lock:
        counts = {"pending": 0, "reserved": 0, "bound": 0}
        for gang in planner.gangs.values():
            now_in = phase(planner, gang)
            if now_in in counts:
                counts[now_in] += 1
        c = planner.compiled
        usable = int(c.gpu_usable.sum())
        return {
            **{f"gangs_{k}": float(v) for k, v in counts.items()},
            "gpus_total": float(usable),
            "gpus_allocated": float(usable - int(c.free_gpu_count.sum())),
            "gpu_allocation_ratio": c.gpu_allocation_ratio(),
        }


def phase(planner: Planner, gang: GangRecord) -> str:
    """pending (a member waits for a plan), reserved, bound, or external (bound by others)."""
    if not gang.plans:
        return "pending" if any(not p.node for p in gang.members.values()) else "external"
    holdings = [planner.state.holdings[k] for k in gang.plans]
    if all(h.phase is HoldingPhase.COMMITTED for h in holdings):
        return "bound"
    return "reserved"


def largest_free_by_level(c: CompiledCluster) -> dict[str, int]:
    """Wholly free GPUs of the emptiest domain of each level above the node."""
    out = {}
    for level, name in enumerate(c.level_names[1:], start=1):
        lo, hi = c.level_domain_range[level]
        free = c.domain_free_gpus[lo:hi]
        out[name] = int(free.max()) if free.size else 0
    return out
