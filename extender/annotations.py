"""Every label and annotation key Phalanx reads from pods or writes onto them.

Reading: a plain gang (for users without a PodGroup controller) and per-gang topology
constraints. Writing: the Binding's annotations, which the apiserver merges into the pod in the
same update that sets ``spec.nodeName``; they are also what a restarted extender rebuilds its
allocations from, so they carry the whole plan of the gang, not only this pod's part.
"""

from __future__ import annotations

PREFIX = "phalanx.io/"

# -- read: plain Phalanx gangs ----------------------------------------------------------------
GANG = PREFIX + "gang"
"""Gang name (same namespace) for pods that no PodGroup API names."""
GANG_SIZE = PREFIX + "gang-size"
"""Members the gang needs before any of them is placed (its quorum)."""
GANG_TIMEOUT_SECONDS = PREFIX + "gang-timeout-seconds"
"""How long a reservation waits for every member to bind before it is given back."""

# -- read: constraints and hints (any member may carry them; the first seen wins) -------------
REQUIRED_LEVEL = PREFIX + "required-level"
"""Fabric level name (``node``, ``su``, ``clique``...) whose single domain must hold the gang."""
PREFERRED_LEVEL = PREFIX + "preferred-level"
"""Fabric level tried first, widening level by level when it does not fit."""
NVLINK_GROUP = PREFIX + "nvlink-group"
"""k > 0: every k consecutive ranks share one NVLink domain (tensor-parallel groups)."""
COMM_INTENSITY = PREFIX + "comm-intensity"
"""0..1, how much the job's speed depends on its links."""
QUEUE = PREFIX + "queue"
TENANT = PREFIX + "tenant"
"""Fair-share tenant; defaults to the namespace."""
RUNTIME_ESTIMATE_SECONDS = PREFIX + "runtime-estimate-seconds"
JOB_CLASS = PREFIX + "job-class"
"""What kind of job it is (the application, a recurring job's name): run-time estimates learn
from finished gangs of the same class in the queue before the whole queue's."""

# -- written on bind ----------------------------------------------------------------------------
GPU_IDS = PREFIX + "gpu-ids"
"""Comma-separated GPU indices chosen on the node (``0,1,2,3``)."""
GPU_UUIDS = PREFIX + "gpu-uuids"
GPU_MILLI = PREFIX + "gpu-milli"
"""Share of each listed GPU, 1000 for whole GPUs."""
GANG_KEY = PREFIX + "gang-key"
"""``namespace/name`` of the gang the pod was placed with."""
RANK = PREFIX + "rank"
GANG_NODES = PREFIX + "gang-nodes"
"""Comma-separated node of every rank, in rank order."""
GANG_PLAN = PREFIX + "gang-plan"
"""JSON of the gang's whole plan (every member's node and GPUs): what a restart re-reserves."""
BINDING_ANNOTATIONS = frozenset(
    {GPU_IDS, GPU_UUIDS, GPU_MILLI, GANG_KEY, RANK, GANG_NODES, GANG_PLAN}
)
"""Every annotation the Binding carries."""
