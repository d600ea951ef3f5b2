"""``/debug/explain``: one gang, why it waits or why it is where it is (``phalanx explain``).

A waiting gang gets its reason code and the message its pods' events carry, the gang or tenant
it waits for, its place in its queue, and what would let it run; a placed gang gets its plans:
nodes, level and domain, the cost terms its placement was chosen by, the solver, and how long
the reservation has left. Read under the planner's lock; nothing is changed.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from phalanx.extender.queue_views import gang_views, remedy

if TYPE_CHECKING:
    from phalanx.extender.planner import Planner


class NotFound(LookupError):
    """No gang by that name, or no pod by that name, is known to the extender."""


def explain(planner: Planner, *, gang: str = "", pod: str = "") -> dict[str, Any]:
    """The explanation of the gang named ``gang`` (``ns/name``) or holding pod ``pod``
    (``ns/name``); raises :class:`NotFound`."""
    with planner.lock:
        key = _gang_key(planner, gang, pod)
        record = planner.gangs[key]
        view = next((v for v in gang_views(planner) if v.key == key), None)
        if view is None:  # pods bound by others, not scheduled by Phalanx
            raise NotFound(f"gang {key} holds only pods placed by another scheduler")
        doc: dict[str, Any] = {
            **view.as_dict(),
            "source": record.ref.source,
            "pods": [
                {"name": p.name, "node": p.node, "plan": record.slots.get(p.name, "")}
                for p in sorted(record.members.values(), key=lambda p: p.name)
            ],
        }
        if pod:
            doc["pod"] = pod
        if view.phase == "pending":
            doc["would_run_if"] = remedy(view, int(planner.compiled.free_gpu_count.sum()))
        doc["plans"] = [_plan(planner, k) for k in sorted(record.plans)]
        if record.all_bound_s is not None:
            doc["start_latency_s"] = round(record.all_bound_s - record.first_seen_s, 3)
        return doc


def _gang_key(planner: Planner, gang: str, pod: str) -> str:
    if gang:
        if gang in planner.gangs:
            return gang
        raise NotFound(f"no gang {gang} is known to Phalanx")
    record = planner.pods.get(pod)
    if record is None:
        raise NotFound(f"no pod {pod} is known to Phalanx (never filtered, or deleted)")
    return record.gang_key


def _plan(planner: Planner, ledger_key: str) -> dict[str, Any]:
    holding = planner.state.holdings[ledger_key]
    placement = holding.placement
    now = planner.clock()
    expires = None if math.isinf(holding.expires_at_s) else round(holding.expires_at_s - now, 3)
    return {
        "plan": ledger_key,
        "phase": holding.phase.value,
        "nodes": placement.node_names,
        "level": placement.level,
        "domain": placement.domain,
        "cost": {k: round(v, 4) for k, v in placement.cost.as_dict().items()},
        "solver": placement.solver,
        "optimal": placement.optimal,
        "age_s": round(now - holding.reserved_at_s, 3),
        "expires_in_s": expires,
        "members": [
            {
                "pod": m.member,
                "rank": m.rank,
                "node": m.node,
                "gpus": list(m.gpus),
                "bound": m.member in holding.bound_members,
            }
            for m in placement.members
        ],
    }
