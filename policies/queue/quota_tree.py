"""Hierarchical queues with quotas (Kueue ClusterQueue/Cohort, Volcano capacity, Slurm accounts).

Every queue has a guaranteed share, a borrowing limit above it and a weight for fair-share
ordering. Queues nest: a parent's guarantee must cover its children's, and a parent's limit
caps everything below it, so unused guarantee of one child is lent to its siblings up to the
parent's limit. Gangs name a leaf queue (``Gang.queue``).

A tree is written as YAML or the equivalent mapping::

    queues:
      - name: research
        guaranteed: {gpu: 64}
        borrowing_limit: {gpu: 32}   # may reach 96 GPUs when others leave quota unused
        weight: 2
      - name: nlp
        parent: research
        guaranteed: {gpu: 32, cpu: 256, memory_gib: 2048}

Resources: ``gpu`` (GPUs, fractions allowed) or ``gpu_milli``, ``cpu`` (cores) or
``cpu_milli``, ``memory_gib`` or ``memory_mib``. A resource a queue does not name is not
governed by that queue; an absent ``borrowing_limit`` means unlimited borrowing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from phalanx.policies.resources import RESOURCE_NAMES, Resources
from phalanx.topology.model import MILLI_PER_GPU

MIB_PER_GIB = 1024
MILLI_PER_CORE = 1000
UNLIMITED = Resources(math.inf, math.inf, math.inf)
RESOURCE_KEYS: dict[str, tuple[str, float]] = {
    "gpu": ("gpu_milli", MILLI_PER_GPU),
    "gpu_milli": ("gpu_milli", 1),
    "cpu": ("cpu_milli", MILLI_PER_CORE),
    "cpu_milli": ("cpu_milli", 1),
    "memory_gib": ("memory_mib", MIB_PER_GIB),
    "memory_mib": ("memory_mib", 1),
}
QUEUE_FIELDS = ("name", "parent", "guaranteed", "borrowing_limit", "weight")


class QuotaTreeError(ValueError):
    """An invalid quota tree; the message names the file or queue and the field."""


@dataclass(frozen=True)
class QueueQuota:
    name: str
    parent: str | None
    guaranteed: Resources
    """Per resource; ``inf`` where this queue does not govern the resource."""
    borrowing_limit: Resources
    """How far above ``guaranteed`` the queue may go (``inf``: no limit of its own)."""
    weight: float = 1.0

    @property
    def limit(self) -> Resources:
        return self.guaranteed + self.borrowing_limit


class QuotaTree:
    def __init__(self, queues: list[QueueQuota], where: str = "quota tree") -> None:
        self.where = where
        self.queues: dict[str, QueueQuota] = {}
        for q in queues:
            if q.name in self.queues:
                raise QuotaTreeError(f"{where}: queue {q.name!r} is defined twice")
            self.queues[q.name] = q
        if not self.queues:
            raise QuotaTreeError(f"{where}: has no queues")
        self.children: dict[str | None, list[str]] = {}
        for q in queues:
            if q.parent is not None and q.parent not in self.queues:
                raise QuotaTreeError(
                    f"{where}: queue {q.name!r} names parent {q.parent!r}, which is not defined"
                )
            self.children.setdefault(q.parent, []).append(q.name)
        for name in self.queues:
            self.path(name)
        for parent, kids in self.children.items():
            if parent is not None:
                self._check_children_fit(parent, kids)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_spec(cls, spec: Any, where: str = "quota tree") -> QuotaTree:
        """Build from a parsed YAML document: ``{"queues": [...]}`` or the bare list."""
        if isinstance(spec, QuotaTree):
            return spec
        if isinstance(spec, Mapping):
            unknown = set(spec) - {"queues"}
            if unknown:
                raise QuotaTreeError(f"{where}: unknown top-level field(s) {sorted(unknown)}")
            spec = spec.get("queues")
        if not isinstance(spec, list):
            raise QuotaTreeError(f"{where}: expected a list of queues under 'queues'")
        return cls(
            [_parse_queue(item, f"{where}: queues[{i}]") for i, item in enumerate(spec)], where
        )

    @classmethod
    def load(cls, path: str | Path) -> QuotaTree:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as err:
            raise QuotaTreeError(f"cannot read quota tree {path}: {err.strerror}") from None
        try:
            spec = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            line = f", line {mark.line + 1}" if mark is not None else ""
            raise QuotaTreeError(f"{path}{line}: not valid YAML") from None
        return cls.from_spec(spec, where=str(path))

    # ------------------------------------------------------------------ queries
    def path(self, name: str) -> list[str]:
        """``name`` and its ancestors, leaf first."""
        chain: list[str] = []
        current: str | None = name
        while current is not None:
            if current in chain:
                raise QuotaTreeError(f"{self.where}: queue {name!r} is its own ancestor")
            chain.append(current)
            current = self.queues[current].parent
        return chain

    def is_leaf(self, name: str) -> bool:
        return name in self.queues and not self.children.get(name)

    def leaf_error(self, name: str) -> str | None:
        """Why a gang may not be submitted to ``name``, or None."""
        if name not in self.queues:
            return f"queue {name!r} is not in the quota tree (queues: {sorted(self.queues)})"
        if not self.is_leaf(name):
            return f"queue {name!r} has child queues; submit to one of {self.children[name]}"
        return None

    def check_capacity(self, capacity: Resources) -> None:
        """Top-level guarantees must fit in the cluster, or the guarantees mean nothing."""
        tops = self.children.get(None, [])
        for field in RESOURCE_NAMES:
            asked = sum(g for q in tops if math.isfinite(g := self.queues[q].guaranteed.get(field)))
            if asked > capacity.get(field):
                raise QuotaTreeError(
                    f"{self.where}: top-level queues guarantee {asked:g} {field} but the cluster "
                    f"has {capacity.get(field):g}"
                )

    def _check_children_fit(self, parent: str, kids: list[str]) -> None:
        p = self.queues[parent]
        for field in RESOURCE_NAMES:
            cap = p.guaranteed.get(field)
            asked = sum(g for k in kids if math.isfinite(g := self.queues[k].guaranteed.get(field)))
            if asked > cap:
                raise QuotaTreeError(
                    f"{self.where}: children of queue {parent!r} guarantee {asked:g} {field}, "
                    f"more than its own {cap:g}"
                )


def _parse_queue(item: Any, where: str) -> QueueQuota:
    if not isinstance(item, Mapping):
        raise QuotaTreeError(f"{where}: each queue must be a mapping")
    unknown = set(item) - set(QUEUE_FIELDS)
    if unknown:
        raise QuotaTreeError(f"{where}: unknown field(s) {sorted(unknown)}; known: {QUEUE_FIELDS}")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise QuotaTreeError(f"{where}: field 'name' must be a non-empty string")
    where = f"{where} ({name!r})"
    parent = item.get("parent")
    if parent is not None and not isinstance(parent, str):
        raise QuotaTreeError(f"{where}: field 'parent' must be a queue name")
    weight = item.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0:
        raise QuotaTreeError(f"{where}: field 'weight' must be a positive number, got {weight!r}")
    guaranteed = _parse_resources(item.get("guaranteed"), f"{where}: field 'guaranteed'")
    limit = item.get("borrowing_limit")
    borrowing = (
        UNLIMITED if limit is None else _parse_resources(limit, f"{where}: field 'borrowing_limit'")
    )
    return QueueQuota(name, parent, guaranteed, borrowing, float(weight))


def _parse_resources(spec: Any, where: str) -> Resources:
    if spec is None:
        return UNLIMITED
    if not isinstance(spec, Mapping):
        raise QuotaTreeError(f"{where}: must be a mapping of resource to amount")
    values = {field: math.inf for field in RESOURCE_NAMES}
    for key, amount in spec.items():
        if key not in RESOURCE_KEYS:
            raise QuotaTreeError(
                f"{where}: unknown resource {key!r}; known: {sorted(RESOURCE_KEYS)}"
            )
        field, scale = RESOURCE_KEYS[key]
        if (
            isinstance(amount, bool)
            or not isinstance(amount, int | float)
            or not 0 <= amount < math.inf
        ):
            raise QuotaTreeError(f"{where}.{key}: must be a non-negative number, got {amount!r}")
        if math.isfinite(values[field]):
            raise QuotaTreeError(f"{where}: {field} given twice (as {key!r} and another unit)")
        values[field] = float(amount) * scale
    return Resources(**values)
