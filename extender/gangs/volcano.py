"""Volcano: the ``scheduling.k8s.io/group-name`` annotation names a Volcano ``PodGroup``
(``spec.minMember``, ``spec.queue`` and, in newer releases, ``spec.networkTopology`` whose
``highestTierAllowed`` bounds the HyperNode tier the gang may span: hard or soft)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from phalanx.extender.gangs.ref import (
    GangRef,
    GroupKind,
    GroupLookup,
    LevelRef,
    LevelRefKind,
    min_member_group,
    positive_int,
)

KIND = GroupKind("volcano", "scheduling.volcano.sh", "v1beta1")
ANNOTATIONS = ("scheduling.k8s.io/group-name", "scheduling.volcano.sh/group-name")
HARD_MODE = "hard"


def match(pod: Mapping[str, Any], lookup: GroupLookup) -> GangRef | None:
    meta = pod["metadata"]
    annotations = meta.get("annotations") or {}
    name = next((annotations[k] for k in ANNOTATIONS if annotations.get(k)), None)
    if name is None:
        return None
    namespace = meta.get("namespace") or "default"
    found = min_member_group(KIND, namespace, name, lookup)
    if isinstance(found, GangRef):
        return found
    spec, min_member = found
    required = preferred = None
    topo = spec.get("networkTopology") or {}
    tier = positive_int(topo.get("highestTierAllowed"))
    if tier is not None:
        ref = LevelRef(LevelRefKind.TIER, str(tier))
        if topo.get("mode", HARD_MODE) == HARD_MODE:
            required = ref
        else:
            preferred = ref
    return GangRef(
        KIND.source,
        namespace,
        name,
        min_member,
        required=required,
        preferred=preferred,
        queue=spec.get("queue") or None,
    )
