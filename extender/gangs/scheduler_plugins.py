"""scheduler-plugins coscheduling: the ``scheduling.x-k8s.io/pod-group`` label names a
``PodGroup`` (``spec.minMember``, ``spec.scheduleTimeoutSeconds``) in the pod's namespace."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from phalanx.extender.gangs.ref import GangRef, GroupKind, GroupLookup, min_member_group, seconds

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
    found = min_member_group(KIND, namespace, name, lookup)
    if isinstance(found, GangRef):
        return found
    spec, min_member = found
    return GangRef(
        KIND.source,
        namespace,
        name,
        min_member,
        timeout_s=seconds(spec.get("scheduleTimeoutSeconds")),
    )
