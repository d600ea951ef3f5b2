"""Why the extender does not place a gang, in the words kube-scheduler shows the user.

kube-scheduler copies a filter rejection's message into the pod's ``FailedScheduling`` event
and ``PodScheduled`` condition ("0/64 nodes are available: 64 <message>."), and treats nodes in
``FailedAndUnresolvableNodes`` as hopeless: no preemption is tried for them, and the pod waits
for a cluster event instead of being retried for nothing. So every message starts with its
code from the one vocabulary (:class:`scheduler.reasons.Reason`), ``gang ml/x [code]: ...``,
and only a gang that can never fit this cluster (or is malformed) is answered unresolvable;
"no capacity now", "fragmented", "quota", "waiting_for_members", "waiting_behind" and
"link_hold" (a permit plugin holds a gang that fits for faster links) are answered as failures
kube-scheduler retries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from phalanx.extender.rejection import SameReason
from phalanx.scheduler.feasibility import fragmentation, never_fits
from phalanx.scheduler.gang import Gang, GangSpecError
from phalanx.scheduler.placement import Unplaceable
from phalanx.scheduler.reasons import Reason, code_of
from phalanx.topology.compiled import CompiledCluster

UNRESOLVABLE = frozenset({Reason.NEVER_FITS, Reason.INVALID_SPEC})
"""Codes answered in ``FailedAndUnresolvableNodes``."""
VERDICTS_KEPT = 4096
"""Never-fits verdicts remembered (one per gang) before starting over."""


class NeverFitsError(GangSpecError):
    """A gang spec this cluster can never hold (a member larger than every node, a level or
    GPU model the cluster does not have), as opposed to a malformed one."""


@dataclass
class FilterDecision:
    passing: list[str]
    failed: Mapping[str, str] = field(default_factory=dict)
    unresolvable: Mapping[str, str] = field(default_factory=dict)
    error: str = ""
    names_distinct: bool = False
    """Every offered name is a distinct node of the cluster (set by the planner, which has
    resolved the offer): a rejection can then be written from the request's bytes
    (:mod:`extender.rejection`)."""


def reject(offered: Sequence[str], reason: str, unresolvable: bool = False) -> FilterDecision:
    """No node passes; every offered node carries the reason, which kube-scheduler shows in
    the pod's events. Unresolvable reasons keep preemption from trying."""
    reasons = SameReason(offered, reason)
    if unresolvable:
        return FilterDecision([], unresolvable=reasons)
    return FilterDecision([], failed=reasons)


def waiting_text(gang_key: str, code: str, detail: str) -> str:
    """``gang ml/x [code]: detail``; a detail that already starts with its code (the engine's
    ``capacity: ...``, a quota policy's ``quota: ...``) does not repeat it, and a capacity
    shortage says that it is one of now."""
    prefix = f"{code}: "
    if detail.startswith(prefix):
        detail = detail[len(prefix) :]
    if code == Reason.CAPACITY:
        detail = f"no capacity now: {detail}"
    return f"gang {gang_key} [{code}]: {detail}"


def spec_error_code(exc: GangSpecError) -> Reason:
    return Reason.NEVER_FITS if isinstance(exc, NeverFitsError) else Reason.INVALID_SPEC


class Verdicts:
    """Whether gangs that did not fit ever could, asked once per version of each gang (the
    planner rebuilds a gang's :class:`Gang` object whenever a member or its group changes)."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[Gang, Unplaceable | None]] = {}

    def clear(self) -> None:
        """The cluster changed: every verdict is asked again."""
        self._seen.clear()

    def never(self, gang: Gang, compiled: CompiledCluster) -> Unplaceable | None:
        known = self._seen.get(gang.name)
        if known is not None and known[0] is gang:
            return known[1]
        if len(self._seen) >= VERDICTS_KEPT:
            self._seen.clear()
        verdict = never_fits(gang, compiled)
        self._seen[gang.name] = (gang, verdict)
        return verdict

    def classify(
        self, gang: Gang, result: Unplaceable, compiled: CompiledCluster, *, scattered: bool
    ) -> tuple[Reason, str]:
        """The code and detail for a gang the engine could not place: ``never_fits`` when it
        could not fit the empty cluster either; with ``scattered``, ``fragmented`` for a
        capacity shortage whose GPUs are free but spread too thin, judged on ``compiled`` as it
        is (not the offered nodes' view the engine saw); else the engine's own constraint and
        reason."""
        never = self.never(gang, compiled)
        if never is not None:
            return Reason.NEVER_FITS, never.reason
        code = code_of(result.constraint)
        if scattered and code is Reason.CAPACITY:
            scattered = fragmentation(gang, compiled)
            if scattered is not None:
                return Reason.FRAGMENTED, scattered.reason
        return code, result.reason
