"""The planner's bookkeeping: what it knows about each pod and each gang."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from phalanx.extender import annotations as keys
from phalanx.extender.gangs import GangRef
from phalanx.extender.hints import GangHints
from phalanx.scheduler.gang import Gang, MemberRequest


@dataclass
class PodRecord:
    key: str
    namespace: str
    name: str
    uid: str
    gang_key: str
    pod: dict[str, Any]
    request: MemberRequest | None
    spec_error: str = ""
    """Why ``request`` could not be read, shown to the user instead of placing the pod."""
    node: str = ""
    """The node the pod is bound to, '' while pending."""
    bound_s: float | None = None
    """When it started running on ``node`` (attained service counts from here)."""
    nominated: str = ""
    """The node Phalanx last nominated for it (``status.nominatedNodeName``), '' for none."""

    def moved(self, node: str, request: MemberRequest | None, planned: bool) -> bool:
        """Bound and now named on another node, or holding a place (bound, or ``planned``:
        in a plan's reservation) and now asking for other amounts. The apiserver lets a pod
        change neither once created, but a dry-run request can: the pod is then forgotten and
        seen anew, as one with a new UID, so that nothing holds what it no longer asks for
        and the ledger is what a restart would rebuild from the pod. A request that names no
        node says nothing about the binding."""
        if self.node and node and node != self.node:
            return True
        return bool(self.node or planned) and _amounts(request) != _amounts(self.request)

    def updated(self, pod: dict[str, Any]) -> dict[str, Any]:
        """``pod``, a newer version of this one, as the planner keeps it: once bound, with the
        annotations Phalanx's Binding added (which the apiserver keeps on the pod, but a dry-run
        request does not carry). They win over the update's own: the planner does not read
        them again for a pod it holds, and a restart rebuilds the pod's place from them."""
        old = (self.pod.get("metadata") or {}).get("annotations") or {} if self.node else {}
        kept = {k: v for k, v in old.items() if k in keys.BINDING_ANNOTATIONS}
        meta = pod["metadata"]
        new = meta.get("annotations") or {}
        if all(new.get(k) == v for k, v in kept.items()):
            return pod
        return {**pod, "metadata": {**meta, "annotations": {**new, **kept}}}


@dataclass
class GangRecord:
    """One gang and the ledger entries that hold its members' resources.

    The ledger (``scheduler.state.ClusterState``) is keyed by *plan*: the gang's first plan has
    the gang's key; members placed later (late arrivals, re-planned members) get plans of their
    own, ``<key>#<n>``, released together with the gang.
    """

    ref: GangRef
    members: dict[str, PodRecord] = field(default_factory=dict)
    slots: dict[str, str] = field(default_factory=dict)
    """Pod name -> ledger key of the plan holding its place."""
    plans: set[str] = field(default_factory=set)
    binding: set[str] = field(default_factory=set)
    """Pods whose Binding is being posted right now."""
    arrived: dict[str, float] = field(default_factory=dict)
    """Pods waiting at the bind barrier -> when they reached it."""
    waiting: str = ""
    """Why the gang is not placed, as users see it in pod events."""
    unresolvable: bool = False
    """The gang can never be placed as specified (bad level, too large for any node)."""
    next_extra: int = 1
    started_s: float | None = None
    """When its first member bound (for runtime estimates)."""
    hints: GangHints | None = None
    """Constraints and facts as of its last plan."""
    _pending: Gang | None = field(default=None, repr=False)
    first_seen_s: float = 0.0
    """When the planner first saw a member (start latency: first seen -> all bound)."""
    all_bound_s: float | None = None
    """When every member was first bound (the decision log records it once)."""
    plans_made: int = 0
    """Plans reserved for it so far: the decision log tells a plan from a re-plan."""

    changes: ClassVar[int] = 0
    """Counts every drop of any gang's :attr:`pending_object` (any change to what a cycle
    would be given): equal counts, the same gangs as far as the planner's cycle goes."""

    @property
    def key(self) -> str:
        return self.ref.key

    @property
    def pending_object(self) -> Gang | None:
        """The gang as last put to the cycle; dropped whenever a member or the group
        changes."""
        return self._pending

    @pending_object.setter
    def pending_object(self, value: Gang | None) -> None:
        if value is None:
            GangRecord.changes += 1
        self._pending = value

    def new_extra_key(self) -> str:
        key = f"{self.key}#{self.next_extra}"
        self.next_extra += 1
        return key


def _amounts(request: MemberRequest | None) -> tuple[int, ...] | None:
    """What a request takes from a node (tolerations and GPU models follow the cluster's
    taints and do not change what a bound pod holds)."""
    if request is None:
        return None
    return (request.gpus, request.gpu_milli, request.cpu_milli, request.memory_mib)


_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple[Any, ...]:
    """``w-2`` before ``w-10``: ranks follow the numbers in pod names."""
    return tuple(int(part) if part.isdigit() else part for part in _DIGITS.split(name))
