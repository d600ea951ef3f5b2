"""Queue policy options a run can fill in from its own trace.

The ``quota`` policy needs a quota tree. A trace that states each tenant's guaranteed share
(Philly's virtual clusters, from ``philly_vc_node_counts.csv``) already says what the tree
should be, so without ``tree=`` the run builds one flat tree from those shares, the way the
trace's operators set up their cluster; a trace without shares gets a clear error instead of
Python's complaint about a missing constructor argument.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from phalanx.policies.registry import PolicyOptionError
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
