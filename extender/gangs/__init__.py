"""Gang membership: which gang a pod belongs to, read from whichever API declared it.

One module per source; :func:`resolve_gang` tries them in a fixed order and falls back to a
single-member gang for pods that name no group.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from phalanx.extender.gangs import kueue, native, phalanx, scheduler_plugins, volcano
from phalanx.extender.gangs.ref import SINGLETON_SOURCE, GangRef, GroupKind, GroupLookup

SOURCES = (scheduler_plugins, volcano, kueue, native, phalanx)
"""Tried in this order; the first source a pod names decides its gang."""
GROUP_KINDS: tuple[GroupKind, ...] = (scheduler_plugins.KIND, volcano.KIND, native.KIND)
"""PodGroup resources to list and watch."""


def resolve_gang(pod: Mapping[str, Any], lookup: GroupLookup) -> GangRef:
    for source in SOURCES:
        ref = source.match(pod, lookup)
        if ref is not None:
            return ref
    meta = pod["metadata"]
    return GangRef(SINGLETON_SOURCE, meta.get("namespace") or "default", meta["name"], 1)


__all__ = ["GROUP_KINDS", "GangRef", "GroupKind", "GroupLookup", "resolve_gang"]
