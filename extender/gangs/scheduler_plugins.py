"""scheduler-plugins coscheduling: the ``scheduling.x-k8s.io/pod-group`` label names a
``PodGroup`` (``spec.minMember``, ``spec.scheduleTimeoutSeconds``) in the pod's namespace."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from extender.gangs.ref import GangRef, GroupKind, GroupLookup, positive_int, seconds

KIND = GroupKind("scheduler-plugins", "scheduling.x-k8s.io", "v1alpha1")
LABELS = ("scheduling.x-k8s.io/pod-group", "pod-group.scheduling.sigs.k8s.io")
"""Current label, then the one of releases before the API moved to ``x-k8s.io``."""


def match(pod: Mapping[str, Any], lookup: GroupLookup) -> GangRef | None:
    meta = pod["metadata"]
    labels = meta.get("labels") or {}
    name = next((labels[k] for k in LABELS if labels.get(k)), None)
    if name is None:
        return None
    namespace = meta.get("namespace") or "default"
    group = lookup(KIND, namespace, name)
    if group is None:
        return GangRef(
            KIND.source,
            namespace,
            name,
            None,
            problem=f"PodGroup {namespace}/{name} ({KIND.group}) not found",
        )
    spec = group.get("spec") or {}
    min_member = positive_int(spec.get("minMember", 1))
    if min_member is None:
        return GangRef(
            KIND.source,
            namespace,
            name,
            None,
            problem=f"PodGroup {namespace}/{name}: spec.minMember {spec.get('minMember')!r} "
            "is not a positive integer",
        )
    return GangRef(
        KIND.source,
        namespace,
        name,
        min_member,
        timeout_s=seconds(spec.get("scheduleTimeoutSeconds")),
    )
