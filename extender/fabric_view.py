"""``/ui/topology.json``: the cluster's fabric and what each node holds, for the ``/ui`` page.

The page draws the fabric from this one document: the levels above the node (scalable units,
spines, NVLink cliques), each domain with its parent so the page can nest them, every node with
its GPUs allocated and reserved, and every gang Phalanx has placed with its nodes so a selected
gang can be highlighted. The queue itself comes from ``/debug/queue``; nothing here repeats it.
Read under the planner's lock; nothing is changed.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np
from phalanx.extender.planner_views import phase
from phalanx.extender.records import natural_key
from phalanx.scheduler.state import HoldingPhase
from phalanx.topology.compiled import NO_PRODUCT, CompiledCluster

if TYPE_CHECKING:
    from phalanx.extender.planner import Planner


def fabric_document(planner: Planner) -> dict[str, Any]:
    """Levels, domains, nodes and placed gangs (see the module docstring)."""
    with planner.lock:
        c = planner.compiled
        reserved = _reserved_gpus_by_node(planner)
        return {
            "cluster": c.cluster.name,
            "levels": [
                {"name": name, "nvlink": bool(c.level_is_nvlink[li])}
                for li, name in enumerate(c.level_names)
            ],
            "domains": _domains(c),
            "nodes": _nodes(c, reserved),
            "gangs": _gangs(planner),
            "gpus": {
                "total": int(c.gpu_usable.sum()),
                "free": int(c.free_gpu_count.sum()),
                "reserved": sum(reserved.values()),
            },
        }


def _domains(c: CompiledCluster) -> list[dict[str, Any]]:
    """Every domain above the node, top level first, each naming its parent (None at the top)
    and its GPUs in all and wholly free."""
    out: list[dict[str, Any]] = []
    top = c.n_levels - 1
    for level in range(top, 0, -1):
        lo, hi = (int(x) for x in c.level_domain_range[level])
        if hi == lo:
            continue
        # one node of each domain tells its parent one level up
        ids, first = np.unique(c.node_domain[level], return_index=True)
        first_node = dict(zip(ids.tolist(), first.tolist(), strict=True))
        for d in range(lo, hi):
            node = first_node[d]
            parent = c.domain_names[int(c.node_domain[level + 1, node])] if level < top else None
            name = c.domain_names[d]
            out.append(
                {
                    "id": name,
                    "level": c.level_names[level],
                    "name": name.rsplit("/", 1)[-1].split(":", 1)[-1],
                    "parent": parent,
                    "gpus": int(c.domain_gpu_capacity[d]),
                    "free_gpus": int(c.domain_free_gpus[d]),
                }
            )
    return out


def _nodes(c: CompiledCluster, reserved: Counter[str]) -> list[dict[str, Any]]:
    """Each node in cluster order with its usable GPUs, those allocated (any share of a GPU in
    use counts, so fractional members show), and those held by plans not yet bound."""
    usable = c.gpu_usable.sum(axis=1)
    allocated = usable - c.free_gpu_count
    parent_level = 1 if c.n_levels > 1 else None
    out = []
    for i, name in enumerate(c.node_names):
        product = int(c.node_product[i])
        out.append(
            {
                "name": name,
                "product": c.products[product] if product != NO_PRODUCT else "",
                "gpus": int(usable[i]),
                "allocated": int(allocated[i]),
                "reserved": reserved.get(name, 0),
                "domain": (
                    c.domain_names[int(c.node_domain[parent_level, i])]
                    if parent_level is not None
                    else None
                ),
            }
        )
    return out


def _reserved_gpus_by_node(planner: Planner) -> Counter[str]:
    """GPUs that a reservation holds for members not bound yet, by node."""
    out: Counter[str] = Counter()
    for holding in planner.state.holdings.values():
        if holding.phase is not HoldingPhase.RESERVED:
            continue
        for member in holding.placement.members:
            if member.member not in holding.bound_members:
                out[member.node] += len(member.gpus)
    return out


def _gangs(planner: Planner) -> list[dict[str, Any]]:
    """Gangs that Phalanx placed (reserved or bound), each with its nodes, level and domain."""
    out = []
    for gang in sorted(planner.gangs.values(), key=lambda g: g.key):
        if not gang.plans:
            continue
        holdings = [planner.state.holdings[k] for k in sorted(gang.plans)]
        nodes = {m.node for h in holdings for m in h.placement.members}
        out.append(
            {
                "key": gang.key,
                "phase": phase(planner, gang),
                "nodes": sorted(nodes, key=natural_key),
                "level": holdings[0].placement.level,
                "domain": holdings[0].placement.domain,
                "gpus": sum(len(m.gpus) for h in holdings for m in h.placement.members),
            }
        )
    return out
