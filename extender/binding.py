"""Binding a pod: what goes on the Binding, and who posts it.

The planner decides and the :class:`Binder` posts: :class:`RecordingBinder` keeps binds in
memory (``phalanx serve --dry-run``), :mod:`extender.kube_binder` posts them to the apiserver.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from phalanx.extender import annotations as keys
from phalanx.scheduler.placement import MemberPlacement, Placement
from phalanx.topology.compiled import CompiledCluster
from phalanx.topology.model import MILLI_PER_GPU

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


RECORDED_BINDS_KEPT = 10_000
"""Dry-run binds kept (the newest): a long dry run must not grow without bound."""
BOUND_PODS_KEPT = 10_000
"""Pods whose node a dry run remembers to answer a repeated bind (the oldest are forgotten).
A repeat comes within seconds of the first bind; 100,000 of them held about 15 MiB, which a
long dry run (the soak benchmark) showed as growth until the cap was reached."""


@dataclass
class RecordingBinder:
    """Records binds instead of sending them; a repeat for the same node succeeds, another
    node is a conflict, as the apiserver answers. Keeps the newest binds only
    (:attr:`count` counts all)."""

    records: deque[dict[str, object]] = field(
        default_factory=lambda: deque(maxlen=RECORDED_BINDS_KEPT)
    )
    count: int = 0
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
            while len(self._bound) > BOUND_PODS_KEPT:
                del self._bound[next(iter(self._bound))]
            self.count += 1
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
    compiled: CompiledCluster,
    gang_key: str,
    placement: Placement,
    member: MemberPlacement,
    gang_members: Sequence[MemberPlacement] | None = None,
) -> dict[str, str]:
    """What the apiserver merges into the pod: this member's GPUs, its rank and the gang's node
    per rank over ``gang_members`` (every planned member of the gang, in rank order: a gang
    whose members were planned again holds several plans), and the member's own plan so that
    a restarted extender can re-reserve the unbound ranks."""
    node = compiled.cluster.nodes[member.node_index]
    ranked = sorted(placement.members, key=lambda m: m.rank)
    plan = encode_plan(placement.gang, ranked)
    if len(plan) > MAX_PLAN_ANNOTATION_BYTES:
        plan = encode_plan(placement.gang, [member])
    everyone = list(gang_members) if gang_members is not None else ranked
    rank = next((i for i, m in enumerate(everyone) if m.member == member.member), member.rank)
    return {
        keys.GPU_IDS: ",".join(str(g) for g in member.gpus),
        keys.GPU_UUIDS: ",".join(node.gpus[g].uuid for g in member.gpus),
        keys.GPU_MILLI: str(member.gpu_milli),
        keys.GANG_KEY: gang_key,
        keys.RANK: str(rank),
        keys.GANG_NODES: ",".join(m.node for m in everyone),
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


def placed_as_planned(pod: Mapping[str, Any], member: MemberPlacement) -> bool:
    """Do the GPUs the pod's own Binding named (its ``gpu-ids`` annotation) agree with
    ``member``, the place a plan holds for it? After a restart a plan is read back from the
    first bound rank's annotation, which may be older than this pod's own (a member planned
    again after that rank bound): the pod's annotation is what its container got. True when
    the pod names no GPUs (or nothing readable): then the plan is all there is to go by."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    text = annotations.get(keys.GPU_IDS)
    if not isinstance(text, str):
        return True
    parts = text.split(",") if text else []
    if not all(p.isascii() and p.isdigit() and len(p) <= MAX_GPU_ID_DIGITS for p in parts):
        return True
    return sorted(int(p) for p in parts) == sorted(member.gpus)


MAX_GPU_ID_DIGITS = 4


class PlanFormatError(ValueError):
    """A ``phalanx.io/gang-plan`` annotation that cannot be read back."""


def decode_plan(
    text: str, compiled: CompiledCluster, gang_key: str
) -> tuple[str, list[MemberPlacement]]:
    """(ledger key, members) from a gang-plan annotation; members on nodes this cluster no
    longer has are left out.

    Phalanx wrote the annotation, but it is read back from a pod, and a pod can carry anything
    (in dry-run mode it arrives in the request itself): every number is checked against what
    the ledger can hold, so that a forged plan is refused here instead of taking negative cpu
    or GPUs twice."""
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise PlanFormatError(f"annotation {keys.GANG_PLAN} is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise PlanFormatError(f"annotation {keys.GANG_PLAN} must be a JSON object")
    ledger_key = doc.get("key")
    if not isinstance(ledger_key, str) or not _plan_key_of(ledger_key, gang_key):
        raise PlanFormatError(
            f"annotation {keys.GANG_PLAN}: key must be {gang_key!r} or {gang_key + '#<n>'!r}"
        )
    entries = doc.get("members")
    if not isinstance(entries, list):
        raise PlanFormatError(f"annotation {keys.GANG_PLAN}: members must be a list")
    members = []
    for i, m in enumerate(entries):
        member = _plan_member(m, compiled, f"annotation {keys.GANG_PLAN}: members[{i}]")
        if member is not None:
            members.append(member)
    return ledger_key, members


MAX_PLAN_NUMBER = 2**48
"""Largest cpu (milli) or memory (MiB) a plan member may hold: the request limit of
:mod:`extender.podspec`."""


def _plan_member(m: object, compiled: CompiledCluster, where: str) -> MemberPlacement | None:
    if not isinstance(m, dict):
        raise PlanFormatError(f"{where} must be an object")
    pod, node = m.get("pod"), m.get("node")
    if not isinstance(pod, str) or not pod or not isinstance(node, str):
        raise PlanFormatError(f"{where}: pod and node must be strings")
    index = compiled.node_index.get(node)
    if index is None:
        return None
    gpus = m.get("gpus")
    count = int(compiled.gpu_count[index])
    if (
        not isinstance(gpus, list)
        or not all(_whole(g, count - 1) for g in gpus)
        or len(set(gpus)) != len(gpus)
    ):
        raise PlanFormatError(f"{where}.gpus must be distinct GPU indices of node {node!r}")
    numbers = {
        "gpuMilli": m.get("gpuMilli"),
        "cpuMilli": m.get("cpuMilli", 0),
        "memoryMiB": m.get("memoryMiB", 0),
        "rank": m.get("rank", 0),
    }
    for name, value in numbers.items():
        if not _whole(value, MAX_PLAN_NUMBER):
            raise PlanFormatError(f"{where}.{name} must be an integer in 0..{MAX_PLAN_NUMBER}")
    if gpus and not 0 < numbers["gpuMilli"] <= MILLI_PER_GPU:  # a member without GPUs: any
        raise PlanFormatError(f"{where}.gpuMilli must be in 1..{MILLI_PER_GPU}")
    return MemberPlacement(
        member=pod,
        node=node,
        node_index=index,
        gpus=tuple(gpus),
        gpu_milli=numbers["gpuMilli"],
        cpu_milli=numbers["cpuMilli"],
        memory_mib=numbers["memoryMiB"],
        rank=numbers["rank"],
    )


def _plan_key_of(ledger_key: str, gang_key: str) -> bool:
    """Is ``ledger_key`` one of the gang's plans (its own key, or ``<key>#<n>`` for members
    placed later)? Another gang's key would let one pod's annotation take over its plan."""
    if ledger_key == gang_key:
        return True
    head, sep, number = ledger_key.rpartition("#")
    return (
        head == gang_key
        and bool(sep)
        and number.isascii()
        and number.isdigit()
        and len(number) <= MAX_PLAN_NUMBER_DIGITS
    )


MAX_PLAN_NUMBER_DIGITS = 9


def _whole(value: object, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= high
