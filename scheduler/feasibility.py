"""Whether a gang that does not fit now ever could, and whether what it lacks is room or order.

:func:`never_fits` asks the question kube-scheduler needs answered to stop retrying a gang:
would its quorum fit if nothing else ran? It is a proof, not a search: the capacity of every
node and domain for each kind of member is computed on the *empty* cluster (every usable GPU
free, cpu and memory at their capacity) with the engine's own capacity kernels, and a gang is
declared never to fit only when one kind of member alone already exceeds what the whole cluster
(or every domain of its required level) can hold. A gang that passes may still fail to pack;
it is then told "not now", never "never".

:func:`fragmentation` tells "no capacity now" from "fragmented" on the live state: enough free
GPUs in total for the gang, but too few on any one node to hold a member. It reads the state as
it is, so a caller that hides nodes from the planner (the extender withholds the nodes
kube-scheduler did not offer) asks it outside that view.
"""

from __future__ import annotations

import weakref

import numpy as np
from phalanx.scheduler.cluster_index import ClusterIndex, cluster_index
from phalanx.scheduler.eligibility import FreeArrays, explain_no_node, static_mask
from phalanx.scheduler.gang import Gang
from phalanx.scheduler.placement import Unplaceable
from phalanx.scheduler.reasons import Reason
from phalanx.scheduler.unit_classes import ClassCapacity, UnitClass, class_capacity, unit_classes
from phalanx.scheduler.why_unplaced import amount, describe, fragmented_reason
from phalanx.topology.compiled import CompiledCluster
from phalanx.topology.model import MILLI_PER_GPU

_EMPTY: dict[int, FreeArrays] = {}


def empty_arrays(compiled: CompiledCluster) -> FreeArrays:
    """The free arrays of ``compiled``'s cluster with nothing allocated (built once per
    cluster; copies of a compiled cluster share it)."""
    key = id(compiled.node_domain)
    arrays = _EMPTY.get(key)
    if arrays is None:
        usable = compiled.gpu_usable
        bits = np.left_shift(np.uint64(1), np.arange(usable.shape[1], dtype=np.uint64))
        mask = np.where(usable, bits, np.uint64(0)).sum(axis=1, dtype=np.uint64)
        arrays = FreeArrays(
            np.where(usable, 0, MILLI_PER_GPU).astype(np.int32),
            mask,
            usable.sum(axis=1).astype(np.int32),
            compiled.cpu_capacity_milli.copy(),
            compiled.memory_capacity_mib.copy(),
        )
        for array in vars(arrays).values():
            array.flags.writeable = False
        _EMPTY[key] = arrays
        weakref.finalize(compiled.node_domain, _EMPTY.pop, key, None)
    return arrays


def never_fits(gang: Gang, compiled: CompiledCluster) -> Unplaceable | None:
    """Why ``gang``'s quorum could not be placed even on the empty cluster, or None when it
    might fit. ``constraint`` is a :class:`~scheduler.reasons.Reason` value: a static filter
    no node passes, ``capacity``/``cpu_memory``/``nvlink_group`` (the whole cluster is too
    small) or ``required_level`` (every domain of that level is). ``gang`` must already have
    passed :func:`~scheduler.validation.validate_gang_for_cluster`."""
    c = compiled
    index = cluster_index(c)
    empty = empty_arrays(c)
    classes = unit_classes(gang.members[: gang.quorum], gang.nvlink_group)
    caps = [class_capacity(c, index, cls, empty) for cls in classes]
    top = c.n_levels - 1
    root = c.level_names[top]
    for cls in classes:
        if not static_mask(c, index, cls.request).any():
            constraint, why = explain_no_node(c, index, cls.request)
            return Unplaceable(gang.name, f"{describe(cls)}: {why}", constraint, None)
    lo, hi = c.level_domain_range[top]
    for cls, cap in zip(classes, caps, strict=True):
        room = int(cap.unit_cap[lo:hi].max())
        if room < cls.units:
            constraint = _shortage(c, index, cls, cap, empty)
            return Unplaceable(
                gang.name,
                f"{constraint}: the gang needs {_amounts(c, index, cls, cls.units)}; with "
                f"nothing running the cluster has {_amounts(c, index, cls, room, short=True)}",
                constraint,
                root,
            )
    if not gang.required_level:
        return None
    level = c.level_index(gang.required_level)
    lo, hi = c.level_domain_range[level]
    fits = np.ones(hi - lo, dtype=bool)
    for cls, cap in zip(classes, caps, strict=True):
        fits &= cap.unit_cap[lo:hi] >= cls.units
    if fits.any():
        return None
    name = gang.required_level
    short = next(
        (
            (cls, int(cap.unit_cap[lo:hi].max()))
            for cls, cap in zip(classes, caps, strict=True)
            if int(cap.unit_cap[lo:hi].max()) < cls.units
        ),
        None,
    )
    if short is None:
        detail = f"no {name} domain has room for every kind of member at once, even empty"
    else:
        cls, room = short
        detail = (
            f"the gang needs {_amounts(c, index, cls, cls.units)} in one {name} domain; with "
            f"nothing running the largest {name} has {_amounts(c, index, cls, room, short=True)}"
        )
    return Unplaceable(gang.name, f"required_level {name}: {detail}", Reason.REQUIRED_LEVEL, name)


def fragmentation(gang: Gang, compiled: CompiledCluster) -> Unplaceable | None:
    """Why ``gang``'s quorum does not fit the live state although enough GPUs are free, or
    None when what it lacks is capacity (or nothing: it may fit)."""
    c = compiled
    index = cluster_index(c)
    free = FreeArrays.of(c)
    lo, hi = c.level_domain_range[c.n_levels - 1]
    for cls in unit_classes(gang.members[: gang.quorum], gang.nvlink_group):
        room = int(class_capacity(c, index, cls, free).unit_cap[lo:hi].max())
        if room >= cls.units:
            continue
        why = fragmented_reason(c, index, cls, room, free)
        if why is not None:
            return Unplaceable(gang.name, why, Reason.FRAGMENTED, c.level_names[-1])
    return None


def _shortage(
    compiled: CompiledCluster,
    index: ClusterIndex,
    cls: UnitClass,
    cap: ClassCapacity,
    empty: FreeArrays,
) -> Reason:
    """What the whole empty cluster is short of for ``cls``: NVLink domains (the members fit,
    their groups do not), cpu or memory (the GPUs would do), else GPUs."""
    members = int(cap.member_cap.sum())
    if cls.nvlink and members >= len(cls.members):
        return Reason.NVLINK_GROUP
    request = cls.request
    if request.gpu_milli_total and (request.cpu_milli or request.memory_mib):
        eligible = static_mask(compiled, index, request)
        if request.gpus:
            gpu_room = int((empty.free_gpu_count[eligible] // request.gpus).sum())
        else:
            per_gpu = MILLI_PER_GPU // request.gpu_milli
            gpu_room = int((empty.free_gpu_count[eligible] * per_gpu).sum())
        if gpu_room >= len(cls.members):
            return Reason.CPU_MEMORY
    return Reason.CAPACITY


def _amounts(
    compiled: CompiledCluster, index: ClusterIndex, cls: UnitClass, units: int, short: bool = False
) -> str:
    eligible = static_mask(compiled, index, cls.request)
    whole_node_gpus = int(compiled.gpu_usable[eligible].sum(axis=1).max())
    return amount(cls, units, whole_node_gpus, short)
