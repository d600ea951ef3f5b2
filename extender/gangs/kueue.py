"""Kueue plain-pod groups: the ``kueue.x-k8s.io/pod-group-name`` label and the
``kueue.x-k8s.io/pod-group-total-count`` annotation on every member (no group object), plus
Kueue's topology-aware scheduling annotations, whose values are node label keys."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from phalanx.extender.gangs.ref import GangRef, GroupLookup, LevelRef, LevelRefKind, positive_int

SOURCE = "kueue"
GROUP_LABEL = "kueue.x-k8s.io/pod-group-name"
TOTAL_COUNT = "kueue.x-k8s.io/pod-group-total-count"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
REQUIRED_TOPOLOGY = "kueue.x-k8s.io/podset-required-topology"
PREFERRED_TOPOLOGY = "kueue.x-k8s.io/podset-preferred-topology"


def match(pod: Mapping[str, Any], lookup: GroupLookup) -> GangRef | None:
    meta = pod["metadata"]
    labels = meta.get("labels") or {}
    name = labels.get(GROUP_LABEL)
    if not name:
        return None
    namespace = meta.get("namespace") or "default"
    annotations = meta.get("annotations") or {}
    total = positive_int(annotations.get(TOTAL_COUNT))
    if total is None:
        return GangRef(
            SOURCE,
            namespace,
            name,
            None,
            problem=f"pod group {namespace}/{name}: annotation {TOTAL_COUNT} is "
            f"{annotations.get(TOTAL_COUNT)!r}, expected a positive integer",
        )
    required = annotations.get(REQUIRED_TOPOLOGY)
    preferred = annotations.get(PREFERRED_TOPOLOGY)
    return GangRef(
        SOURCE,
        namespace,
        name,
        total,
        required=LevelRef(LevelRefKind.LABEL, required) if required else None,
        preferred=LevelRef(LevelRefKind.LABEL, preferred) if preferred else None,
        queue=labels.get(QUEUE_LABEL) or None,
    )
