"""A gang's constraints and scheduling facts, gathered from its group object and its pods'
annotations into the fields of :class:`scheduler.gang.Gang`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from phalanx.extender import annotations as keys
from phalanx.extender.gangs.ref import GangRef, LevelRef, LevelRefKind
from phalanx.extender.podspec import annotations_of, created_s, namespace_of, priority_of
from phalanx.scheduler.gang import Gang, GangSpecError
from phalanx.topology.compiled import CompiledCluster
from phalanx.topology.model import NODE_LEVEL

if TYPE_CHECKING:
    from phalanx.extender.records import PodRecord

HOSTNAME_LABEL = "kubernetes.io/hostname"
"""Kueue and native topology constraints name the node level by this label."""
DEFAULT_QUEUE = "default"
MAX_INT_ANNOTATION = 2**31 - 1
"""Integer annotations (``nvlink-group``) are 32-bit: a larger one can only be a mistake, and it
would not fit the placement kernels' integer arrays."""


@dataclass(frozen=True)
class GangHints:
    required_level: str | None = None
    preferred_level: str | None = None
    nvlink_group: int = 0
    comm_intensity: float = 1.0
    priority: int = 0
    queue: str = DEFAULT_QUEUE
    tenant: str = ""
    submit_time_s: float = 0.0
    runtime_estimate_s: float | None = None
    job_class: str = ""


def gang_hints(ref: GangRef, pods: Sequence[PodRecord], compiled: CompiledCluster) -> GangHints:
    """Group objects win over annotations; among pods, the first (by rank order) that carries
    an annotation decides it. Raises GangSpecError naming a bad value."""
    where = f"gang {ref.key}"
    annotations = [annotations_of(p.pod) for p in pods]

    def first(key: str) -> str | None:
        for on_pod in annotations:
            value = on_pod.get(key)
            if value:
                return value
        return None

    required = _level(ref.required, compiled, where) if ref.required else None
    if required is None and first(keys.REQUIRED_LEVEL):
        required = _level(
            LevelRef(LevelRefKind.LEVEL, first(keys.REQUIRED_LEVEL) or ""), compiled, where
        )
    preferred = _level(ref.preferred, compiled, where) if ref.preferred else None
    if preferred is None and first(keys.PREFERRED_LEVEL):
        preferred = _level(
            LevelRef(LevelRefKind.LEVEL, first(keys.PREFERRED_LEVEL) or ""), compiled, where
        )
    return GangHints(
        required_level=required,
        preferred_level=preferred,
        nvlink_group=_int(first(keys.NVLINK_GROUP), keys.NVLINK_GROUP, where, 0),
        comm_intensity=_float(first(keys.COMM_INTENSITY), keys.COMM_INTENSITY, where, 1.0),
        priority=max((priority_of(p.pod) for p in pods), default=0),
        queue=ref.queue or first(keys.QUEUE) or DEFAULT_QUEUE,
        tenant=first(keys.TENANT) or (namespace_of(pods[0].pod) if pods else ref.namespace),
        submit_time_s=min((created_s(p.pod) for p in pods), default=0.0),
        runtime_estimate_s=_optional_float(
            first(keys.RUNTIME_ESTIMATE_SECONDS), keys.RUNTIME_ESTIMATE_SECONDS, where
        ),
        job_class=first(keys.JOB_CLASS) or "",
    )


def _level(ref: LevelRef, compiled: CompiledCluster, where: str) -> str:
    names = compiled.level_names
    if ref.kind is LevelRefKind.LEVEL:
        if ref.value not in names:
            raise GangSpecError(f"{where}: unknown topology level {ref.value!r}; known: {names}")
        return ref.value
    if ref.kind is LevelRefKind.TIER:
        tier = int(ref.value)
        return names[min(tier, len(names) - 1)]
    if ref.value == HOSTNAME_LABEL:
        return NODE_LEVEL
    for level in compiled.cluster.levels:
        if level.label == ref.value:
            return level.name
    labels = [HOSTNAME_LABEL, *(lvl.label for lvl in compiled.cluster.levels if lvl.label)]
    raise GangSpecError(
        f"{where}: topology label {ref.value!r} is not a level of this cluster; known: {labels}"
    )


def _int(text: str | None, key: str, where: str, default: int) -> int:
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise GangSpecError(f"{where}: annotation {key} = {text!r} is not an integer") from None
    if value < 0:
        raise GangSpecError(f"{where}: annotation {key} = {text!r} must not be negative")
    if value > MAX_INT_ANNOTATION:
        raise GangSpecError(f"{where}: annotation {key} = {text!r} is too large")
    return value


def _float(text: str | None, key: str, where: str, default: float) -> float:
    value = _optional_float(text, key, where)
    return default if value is None else value


def _optional_float(text: str | None, key: str, where: str) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise GangSpecError(f"{where}: annotation {key} = {text!r} is not a number") from None
    if not math.isfinite(value):
        # float() reads 'nan' and 'inf'; a NaN weight or estimate would poison every
        # comparison the cost and the queue policies make with it.
        raise GangSpecError(f"{where}: annotation {key} = {text!r} is not a finite number")
    if value < 0:
        raise GangSpecError(f"{where}: annotation {key} = {text!r} must not be negative")
    return value


def hints_of(gang: Gang) -> GangHints:
    """The hints a planned gang was planned with (kept on its record for later plans, the
    policies' view of its plan and the decision log)."""
    return GangHints(
        required_level=gang.required_level,
        preferred_level=gang.preferred_level,
        nvlink_group=gang.nvlink_group,
        comm_intensity=gang.comm_intensity,
        priority=gang.priority,
        queue=gang.queue,
        tenant=gang.tenant,
        submit_time_s=gang.submit_time_s,
        runtime_estimate_s=gang.runtime_estimate_s,
        job_class=gang.job_class,
    )
