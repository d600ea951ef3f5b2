"""What a pod's gang is, whichever API declared it: one :class:`GangRef` shape for every source."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

SINGLETON_SOURCE = "pod"


class LevelRefKind(StrEnum):
    LEVEL = "level"
    """A Phalanx fabric level name (``node``, ``su``, ``clique``...)."""
    LABEL = "label"
    """A node label key (Kueue TAS, native PodGroup topology constraints)."""
    TIER = "tier"
    """A Volcano HyperNode tier: 1 is the first fabric level above the node."""


@dataclass(frozen=True)
class LevelRef:
    """A topology level as some API names it; the planner resolves it against the cluster."""

    kind: LevelRefKind
    value: str


@dataclass(frozen=True)
class GroupKind:
    """A PodGroup resource the extender lists and watches.

    ``version`` is the one to use when the apiserver serves it; ``older_versions`` are
    accepted when it does not (an API that moved from alpha to beta keeps working against
    clusters that still serve the older version). Which one a cluster serves is found by
    discovery (``extender.group_versions``)."""

    source: str
    group: str
    version: str
    plural: str = "podgroups"
    older_versions: tuple[str, ...] = ()

    @property
    def api_path(self) -> str:
        return f"/apis/{self.group}/{self.version}"

    @property
    def versions(self) -> tuple[str, ...]:
        """Every accepted version, the preferred one first."""
        return (self.version, *self.older_versions)


@dataclass(frozen=True)
class GangRef:
    """A pod's gang. ``min_member`` is None while the group object is missing, and ``problem``
    then says what is missing: the pod waits with that reason instead of being placed."""

    source: str
    namespace: str
    name: str
    min_member: int | None
    timeout_s: float | None = None
    required: LevelRef | None = None
    preferred: LevelRef | None = None
    queue: str | None = None
    problem: str = ""

    @property
    def key(self) -> str:
        if self.source == SINGLETON_SOURCE:
            return f"{self.namespace}/pod/{self.name}"
        return f"{self.namespace}/{self.name}"


GroupLookup = Callable[[GroupKind, str, str], Mapping[str, Any] | None]
"""(kind, namespace, name) -> the group object, or None when it is not (yet) in the cache."""


def waiting_gang(kind: GroupKind, namespace: str, name: str, problem: str) -> GangRef:
    """The gang of a pod that must wait, with the reason its group cannot be used yet."""
    return GangRef(kind.source, namespace, name, None, problem=problem)


def group_spec(
    kind: GroupKind, namespace: str, name: str, lookup: GroupLookup
) -> Mapping[str, Any] | GangRef:
    """The group object's ``spec``, or a waiting gang when the object is not in the cache."""
    group = lookup(kind, namespace, name)
    if group is None:
        return waiting_gang(
            kind, namespace, name, f"PodGroup {namespace}/{name} ({kind.group}) not found"
        )
    return group.get("spec") or {}


def min_member_group(
    kind: GroupKind, namespace: str, name: str, lookup: GroupLookup
) -> tuple[Mapping[str, Any], int] | GangRef:
    """``spec`` and ``spec.minMember`` (default 1) of a PodGroup that carries its quorum
    there (scheduler-plugins, Volcano), or a waiting gang saying what is wrong."""
    spec = group_spec(kind, namespace, name, lookup)
    if isinstance(spec, GangRef):
        return spec
    min_member = positive_int(spec.get("minMember", 1))
    if min_member is None:
        return waiting_gang(
            kind,
            namespace,
            name,
            f"PodGroup {namespace}/{name}: spec.minMember {spec.get('minMember')!r} "
            "is not a positive integer",
        )
    return spec, min_member


MAX_COUNT = 2**31 - 1
"""Counts and seconds are int32 in every group API; a larger one is refused like a non-number
(it could never be met, and int() of a string of thousands of digits raises)."""


def positive_int(value: Any) -> int | None:
    """An int in 1..MAX_COUNT from an int or a decimal string, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        # str.isdigit() is also true for '²' and other digits int() refuses: ASCII digits only
        if not (text.isascii() and text.isdigit() and len(text) <= len(str(MAX_COUNT))):
            return None
        value = int(text)
    if isinstance(value, int):
        return value if 1 <= value <= MAX_COUNT else None
    return None


def seconds(value: Any) -> float | None:
    number = positive_int(value)
    return float(number) if number is not None else None
