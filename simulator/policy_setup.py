"""Queue policy options a run can fill in from its own trace, and the preemption it implies.

The ``quota`` policy needs a quota tree. A trace that states each tenant's guaranteed share
(Philly's virtual clusters, from ``philly_vc_node_counts.csv``) already says what the tree
should be, so without ``tree=`` the run builds one flat tree from those shares, the way the
trace's operators set up their cluster; a trace without shares gets a clear error instead of
Python's complaint about a missing constructor argument.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from phalanx.policies.registry import PolicyOptionError
from phalanx.scheduler.interfaces import PreemptionPolicy, QueueContext, QueuePolicy
from phalanx.simulator.config import SimulationConfig
from phalanx.simulator.job import TraceWorkload
from phalanx.topology.model import MILLI_PER_GPU

QUOTA_POLICY = "quota"
TREE_OPTION = "tree"


def queue_policy_options(
    name: str,
    options: Mapping[str, Any],
    workload: TraceWorkload,
    cluster_gpus: int,
) -> tuple[dict[str, Any], list[str]]:
    """The options to build queue policy ``name`` with, and notes for the report on what was
    filled in. Only ``quota`` without ``tree`` is changed."""
    chosen = dict(options)
    if name != QUOTA_POLICY or TREE_OPTION in chosen:
        return chosen, []
    if not workload.tenant_guarantees:
        raise PolicyOptionError(
            f"queue policy {QUOTA_POLICY!r} needs a quota tree: give --policy-option "
            f"{TREE_OPTION}=quotas.yaml (format in docs/policies.md); trace "
            f"{workload.name!r} states no tenant guarantees to build one from"
        )
    chosen[TREE_OPTION] = guarantee_tree(workload.tenant_guarantees, workload.tenants, cluster_gpus)
    return chosen, [
        f"quota tree from the trace's {len(workload.tenant_guarantees)} tenant guarantees "
        f"(share of {cluster_gpus} GPUs each); tenants without one may only borrow"
    ]


def guarantee_tree(
    shares: Mapping[str, float], tenants: list[str], cluster_gpus: int
) -> dict[str, Any]:
    """A flat quota tree document: each tenant guaranteed its share of the cluster's GPUs
    (rounded down to a milli-GPU, so that the guarantees never add up to more than the
    cluster), borrowing unlimited; tenants of the trace without a share are guaranteed 0."""
    queues = []
    for tenant in sorted(set(shares) | set(tenants)):
        milli = math.floor(shares.get(tenant, 0.0) * cluster_gpus * MILLI_PER_GPU)
        queues.append({"name": tenant, "guaranteed": {"gpu_milli": milli}})
    return {"queues": queues}


@runtime_checkable
class TimeDrivenQueuePolicy(Protocol):
    """A queue policy whose order changes with time alone (Tiresias: a running gang's service
    crosses a threshold, a waiting gang reaches the starvation guard). The simulator asks it
    after each cycle when that next happens and runs a cycle then."""

    def next_change_s(self, ctx: QueueContext) -> float | None: ...


@runtime_checkable
class PreemptiveQueuePolicy(Protocol):
    """A queue policy that is only itself with preemption (Tiresias): without
    ``--preemption`` the run uses the policy's own."""

    def default_preemption(self) -> PreemptionPolicy: ...


def queue_preemption(
    queue: QueuePolicy,
    queue_name: str,
    config: SimulationConfig,
    build: Callable[..., PreemptionPolicy],
) -> PreemptionPolicy | None:
    """The run's preemption policy: the one named in ``config`` (with ``rank=`` naming the
    run's own queue policy bound to that instance, so the queues preemption sees are the ones
    the order uses), else the queue policy's own, else none."""
    if config.preemption:
        options = dict(config.preemption_options)
        if options.get("rank") == queue_name and callable(getattr(queue, "rank", None)):
            options["rank"] = queue.rank  # type: ignore[attr-defined]
        return build(config.preemption, **options)
    if isinstance(queue, PreemptiveQueuePolicy):
        return queue.default_preemption()
    return None
