"""Why the fast path placed nothing: the reason and the constraint it names, from the
eligibility filters, the capacity of the whole cluster and of the required level."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from phalanx.scheduler.cluster_index import ClusterIndex
from phalanx.scheduler.eligibility import FreeArrays, explain_no_node, member_capacity, static_mask
from phalanx.scheduler.gang import Gang, MemberRequest
from phalanx.scheduler.placement import Unplaceable
from phalanx.scheduler.unit_classes import ClassCapacity, UnitClass
from phalanx.topology.compiled import CompiledCluster
from phalanx.topology.model import MILLI_PER_GPU


@dataclass
class WhyUnplaced:
    """The search's view of a gang that did not fit."""

    compiled: CompiledCluster
    index: ClusterIndex
    gang: Gang
    classes: list[UnitClass]

    def explain(self, caps: list[ClassCapacity], stop: int) -> Unplaceable:
        """Why nothing was placed: the first of no eligible node, the whole cluster short of a
        class, a required level too small, or (else) the packing of several classes."""
        c = self.compiled
        top = c.n_levels - 1
        for cls in self.classes:
            if not static_mask(c, self.index, cls.request).any():
                constraint, why = explain_no_node(c, self.index, cls.request)
                return self._unplaceable(f"{describe(cls)}: {why}", constraint, None)
        for cls, cap in zip(self.classes, caps, strict=True):
            lo, hi = c.level_domain_range[top]
            room = int(cap.unit_cap[lo:hi].max())
            if room < cls.units:
                return self._short_everywhere(cls, cap, room)
        for cls, cap in zip(self.classes, caps, strict=True):
            lo, hi = c.level_domain_range[stop]
            room = int(cap.unit_cap[lo:hi].max())
            if room < cls.units:
                level = c.level_names[stop]
                return self._unplaceable(
                    f"required_level {level}: no {level} domain has "
                    f"{self._amount(cls, cls.units)}; best {level} has "
                    f"{self._amount(cls, room, short=True)}",
                    "required_level",
                    level,
                )
        level = c.level_names[stop]
        return self._unplaceable(
            f"the member classes ({'; '.join(describe(k) for k in self.classes)}) each fit "
            f"but the fast path packed them together in no {level} domain it tried",
            "packing",
            level,
        )

    def _short_everywhere(self, cls: UnitClass, cap: ClassCapacity, room: int) -> Unplaceable:
        """The whole cluster lacks room for a class: say whether NVLink grouping, cpu/memory
        or GPUs are what is short."""
        c = self.compiled
        root = c.level_names[-1]
        members = int(cap.member_cap.sum())
        need_members = len(cls.members)
        if cls.nvlink and members >= need_members:
            where = c.level_names[cap.container_level] if cap.container_level else "node"
            return self._unplaceable(
                f"nvlink_group {cls.unit_members}: the cluster has room for {members} members of "
                f"{describe(cls)} but only {room} of the {cls.units} NVLink groups fit inside "
                f"one NVLink domain ({where})",
                "nvlink_group",
                where,
            )
        request = cls.request
        eligible = static_mask(c, self.index, request)
        if request.cpu_milli or request.memory_mib:
            gpu_only = MemberRequest(
                gpus=request.gpus,
                gpu_milli=request.gpu_milli,
                gpu_products=request.gpu_products,
                node_selector=request.node_selector,
                tolerations=request.tolerations,
            )
            gpu_room = int(member_capacity(c, gpu_only, eligible, FreeArrays.of(c)).sum())
            if gpu_room >= need_members and request.gpu_milli_total:
                return self._unplaceable(
                    f"cpu/memory: nodes have free GPUs for {gpu_room} members of "
                    f"{describe(cls)} but cpu or memory for only {members}",
                    "cpu_memory",
                    root,
                )
        scattered = fragmented_reason(c, self.index, cls, room, FreeArrays.of(c))
        if scattered is not None:
            return self._unplaceable(scattered, "fragmented", root)
        filtered = "" if eligible.all() else f" on the {int(eligible.sum())} nodes it may use"
        return self._unplaceable(
            f"capacity: the cluster has {self._amount(cls, room, short=True)}{filtered}; the "
            f"gang needs {self._amount(cls, cls.units)}",
            "capacity",
            root,
        )

    def _amount(self, cls: UnitClass, units: int, short: bool = False) -> str:
        eligible = static_mask(self.compiled, self.index, cls.request)
        whole_node_gpus = int(self.compiled.gpu_usable[eligible].sum(axis=1).max())
        return amount(cls, units, whole_node_gpus, short)

    def _unplaceable(self, reason: str, constraint: str, level: str | None) -> Unplaceable:
        return Unplaceable(self.gang.name, reason, constraint, level)


def fragmented_reason(
    compiled: CompiledCluster, index: ClusterIndex, cls: UnitClass, room: int, free: FreeArrays
) -> str | None:
    """Why ``cls`` does not fit although its GPUs are free, or None: the nodes it may use have
    at least the free GPUs (or milli-GPU) all its members need, but scattered, so that only
    ``room`` members fit (a full cluster is short of capacity; this one is fragmented, and
    moving or finishing small jobs would help). Not for NVLink groups, which have a reason of
    their own."""
    request = cls.request
    if cls.nvlink or not request.gpu_milli_total:
        return None
    eligible = static_mask(compiled, index, request)
    members = len(cls.members)
    if request.gpus:
        counts = free.free_gpu_count[eligible]
        have, need = int(counts.sum()), request.gpus * members
        most = f"the most on one node is {int(counts.max(initial=0))}"
        unit = "GPUs"
    else:
        used = free.gpu_used_milli[eligible]
        spare = np.where(compiled.gpu_usable[eligible], MILLI_PER_GPU - used, 0).clip(0)
        have, need = int(spare.sum()), request.gpu_milli * members
        most = f"the most on one GPU is {int(spare.max(initial=0))}"
        unit = "milli-GPU"
    if have < need:
        return None
    return (
        f"fragmented: {have} {unit} are free on the nodes it may use, enough for the {need} "
        f"its {members} members of {describe(cls)} need, but scattered: room for {room} of "
        f"them ({most})"
    )


def describe(cls: UnitClass) -> str:
    """What one member asks for: "8 NVIDIA-H100-80GB-HBM3 GPUs", "250 milli-GPU", ..."""
    r = cls.request
    products = f" {'/'.join(r.gpu_products)}" if r.gpu_products else ""
    if r.gpus:
        return f"{r.gpus}{products} GPU{'s' if r.gpus > 1 else ''}"
    if r.gpu_milli:
        return f"{r.gpu_milli} milli-GPU{products}"
    return f"cpu {r.cpu_milli}m, memory {r.memory_mib}Mi"


def amount(cls: UnitClass, units: int, whole_node_gpus: int, short: bool = False) -> str:
    """ "16 free nodes of 8 GPUs" when a member takes a whole node (``whole_node_gpus``, the
    GPU count of the largest node it may use), else "room for 3 members of 2 GPUs"."""
    if cls.unit_members > 1:
        return f"room for {units} NVLink groups of {cls.unit_members} x {describe(cls)}"
    if cls.request.gpus and cls.request.gpus == whole_node_gpus:
        return f"{units} free nodes" if short else f"{units} free nodes of {describe(cls)}"
    if short:
        return f"room for {units}"
    return f"room for {units} members of {describe(cls)}"
