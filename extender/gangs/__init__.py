"""Gang membership: which gang a pod belongs to, read from whichever API declared it.

One module per source; :func:`resolve_gang` tries them in a fixed order and falls back to a
single-member gang for pods that name no group.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from phalanx.extender.gangs import kueue, native, phalanx, scheduler_plugins, volcano
from phalanx.extender.gangs.ref import SINGLETON_SOURCE, GangRef, GroupKind, GroupLookup

SOURCES = (scheduler_plugins, volcano, kueue, native, phalanx)
"""Tried in this order; the first source a pod names decides its gang."""
GROUP_KINDS: tuple[GroupKind, ...] = (scheduler_plugins.KIND, volcano.KIND, native.KIND)
"""PodGroup resources to list and watch."""


GROUP_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
"""What a group name may look like: a label value (which every object name also is)."""
MAX_GROUP_NAME = 253


def resolve_gang(pod: Mapping[str, Any], lookup: GroupLookup) -> GangRef:
    meta = pod["metadata"]
    namespace = meta.get("namespace") or "default"
    for source in SOURCES:
        ref = source.match(pod, lookup)
        if ref is None:
            continue
        if len(ref.name) <= MAX_GROUP_NAME and GROUP_NAME.fullmatch(ref.name):
            return ref
        # A name from an annotation can hold anything; '#' and '/' would make its gang key
        # read as another gang's plan or a single pod's gang. The pod waits on its own.
        shown = ref.name if len(ref.name) <= 64 else f"{ref.name[:64]}..."
        return GangRef(
            SINGLETON_SOURCE,
            namespace,
            meta["name"],
            None,
            problem=f"pod {namespace}/{meta['name']}: {ref.source} group name {shown!r} is not "
            "a valid name (letters, digits, '-', '_', '.')",
        )
    return GangRef(SINGLETON_SOURCE, namespace, meta["name"], 1)


__all__ = ["GROUP_KINDS", "GangRef", "GroupKind", "GroupLookup", "resolve_gang"]
