"""The native Kubernetes PodGroup (KEP-4671/5832, the Workload API): the pod's
``spec.schedulingGroup.podGroupName`` names a PodGroup whose ``spec.schedulingPolicy`` is
``gang: {minCount}`` or ``basic: {}``; KEP-5732 adds ``spec.schedulingConstraints.topology``
(a node label key whose one domain must hold the group).

Kubernetes 1.37 serves it as ``scheduling.k8s.io/v1beta1`` (feature gate ``GenericWorkload``);
1.36 served ``v1alpha2``. The fields read here are the same in both, so either is accepted and
discovery picks the newest the cluster serves. A Workload's ``spec.podGroupTemplates`` are
not read: the PodGroup a pod names carries its own copy of the template's policy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from phalanx.extender.gangs.ref import (
    GangRef,
    GroupKind,
    GroupLookup,
    LevelRef,
    LevelRefKind,
    group_spec,
    positive_int,
    waiting_gang,
)

KIND = GroupKind("native", "scheduling.k8s.io", "v1beta1", older_versions=("v1alpha2",))


def match(pod: Mapping[str, Any], lookup: GroupLookup) -> GangRef | None:
    group_name = ((pod.get("spec") or {}).get("schedulingGroup") or {}).get("podGroupName")
    if not group_name:
        return None
    namespace = pod["metadata"].get("namespace") or "default"
    spec = group_spec(KIND, namespace, group_name, lookup)
    if isinstance(spec, GangRef):
        return spec
    policy = spec.get("schedulingPolicy") or {}
    gang = policy.get("gang")
    min_count = positive_int(gang.get("minCount")) if isinstance(gang, dict) else 1
    if min_count is None:
        return waiting_gang(
            KIND,
            namespace,
            group_name,
            f"PodGroup {namespace}/{group_name}: spec.schedulingPolicy.gang.minCount "
            f"{gang.get('minCount')!r} is not a positive integer",
        )
    topology = (spec.get("schedulingConstraints") or {}).get("topology") or []
    key = topology[0].get("key") if topology and isinstance(topology[0], dict) else None
    return GangRef(
        KIND.source,
        namespace,
        group_name,
        min_count,
        required=LevelRef(LevelRefKind.LABEL, key) if key else None,
    )
