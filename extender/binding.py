"""Binding a pod: what goes on the Binding, and who posts it.

The planner decides and the :class:`Binder` posts: :class:`RecordingBinder` keeps binds in
memory (``phalanx serve --dry-run``), :mod:`extender.kube_binder` posts them to the apiserver.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import orjson
from phalanx.extender import annotations as keys
from phalanx.scheduler.placement import MemberPlacement, Placement
from phalanx.topology.compiled import CompiledCluster

MAX_PLAN_ANNOTATION_BYTES = 64 * 1024
"""Annotations of one object may total 256 KiB; a larger gang's plan (about 100 bytes a rank)
is cut down to the member's own part, and a restart then re-reserves only bound ranks."""


@dataclass(frozen=True)
class BindRequest:
    namespace: str
    name: str
    uid: str
    node: str
    annotations: dict[str, str]


@dataclass(frozen=True)
class BindOutcome:
    """``ok`` when the pod is bound to the requested node, including when it already was;
    ``bound_node`` is where the apiserver says the pod is, if it is bound anywhere."""

    ok: bool
    error: str = ""
    bound_node: str = ""


class Binder(Protocol):
    def bind(self, request: BindRequest) -> BindOutcome: ...


@dataclass
class RecordingBinder:
    """Records binds instead of sending them; a repeat for the same node succeeds, another
    node is a conflict, as the apiserver answers."""

    records: list[dict[str, object]] = field(default_factory=list)
    _bound: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def bind(self, request: BindRequest) -> BindOutcome:
        key = f"{request.namespace}/{request.name}"
        with self._lock:
            current = self._bound.get(key)
            if current == request.node:
                return BindOutcome(True, bound_node=current)
            if current:
                return BindOutcome(
                    False, f"pod {key} is already assigned to node {current!r}", current
                )
            self._bound[key] = request.node
            self.records.append(
                {
                    "pod": key,
                    "uid": request.uid,
                    "node": request.node,
                    "annotations": dict(request.annotations),
                    "time_s": time.time(),
                }
            )
        return BindOutcome(True, bound_node=request.node)


def bind_annotations(
    compiled: CompiledCluster, gang_key: str, placement: Placement, member: MemberPlacement
) -> dict[str, str]:
    """What the apiserver merges into the pod: this member's GPUs and rank, the gang's node per
    rank, and the whole plan so that a restarted extender can re-reserve the unbound ranks."""
    node = compiled.cluster.nodes[member.node_index]
    ranked = sorted(placement.members, key=lambda m: m.rank)
    plan = encode_plan(placement.gang, ranked)
    if len(plan) > MAX_PLAN_ANNOTATION_BYTES:
        plan = encode_plan(placement.gang, [member])
    return {
        keys.GPU_IDS: ",".join(str(g) for g in member.gpus),
        keys.GPU_UUIDS: ",".join(node.gpus[g].uuid for g in member.gpus),
        keys.GPU_MILLI: str(member.gpu_milli),
        keys.GANG_KEY: gang_key,
        keys.RANK: str(member.rank),
        keys.GANG_NODES: ",".join(m.node for m in ranked),
        keys.GANG_PLAN: plan,
    }


def encode_plan(ledger_key: str, members: Sequence[MemberPlacement]) -> str:
    return orjson.dumps(
        {
            "key": ledger_key,
            "members": [
                {
                    "pod": m.member,
                    "node": m.node,
                    "gpus": list(m.gpus),
                    "gpuMilli": m.gpu_milli,
                    "cpuMilli": m.cpu_milli,
                    "memoryMiB": m.memory_mib,
                    "rank": m.rank,
                }
                for m in members
            ],
        }
    ).decode()


class PlanFormatError(ValueError):
    """A ``phalanx.io/gang-plan`` annotation that cannot be read back."""


def decode_plan(text: str, compiled: CompiledCluster) -> tuple[str, list[MemberPlacement]]:
    """(ledger key, members) from a gang-plan annotation; members on nodes this cluster no
    longer has are left out."""
    try:
        doc = orjson.loads(text)
        ledger_key = str(doc["key"])
        members = []
        for m in doc["members"]:
            index = compiled.node_index.get(m["node"])
            if index is None:
                continue
            members.append(
                MemberPlacement(
                    member=str(m["pod"]),
                    node=str(m["node"]),
                    node_index=index,
                    gpus=tuple(int(g) for g in m["gpus"]),
                    gpu_milli=int(m["gpuMilli"]),
                    cpu_milli=int(m.get("cpuMilli", 0)),
                    memory_mib=int(m.get("memoryMiB", 0)),
                    rank=int(m.get("rank", 0)),
                )
            )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise PlanFormatError(f"annotation {keys.GANG_PLAN} is malformed: {exc}") from None
    return ledger_key, members
