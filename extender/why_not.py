"""Why the extender does not place a gang, in the words kube-scheduler shows the user.

kube-scheduler copies a filter rejection's message into the pod's ``FailedScheduling`` event
and ``PodScheduled`` condition ("0/64 nodes are available: 64 <message>.", or "1 <message>"
where the rejection is one entry, :mod:`extender.rejection`). So every message starts with its code
from the one vocabulary (:class:`scheduler.reasons.Reason`), ``gang ml/x [code]: ...``, and
only a gang that can never fit this cluster (or is malformed) is answered in
``FailedAndUnresolvableNodes``; "no capacity now", "fragmented", "quota",
"waiting_for_members", "waiting_behind" and "link_hold" (a permit plugin holds a gang that fits
for faster links) are answered in ``FailedNodes``, as failures that may pass later.
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
ONE_ENTRY_CODES = frozenset({Reason.WAITING_FOR_MEMBERS, Reason.LINK_HOLD})
"""Retried codes that preemption cannot help with: a rejection of every offered node for one
of them is written as one entry (:mod:`extender.rejection`). Capacity, quota and queue
reasons stay listed node by node, so that kube-scheduler's preemption still looks at those
nodes ("No preemption victims found" rather than "Preemption is not helpful")."""
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
    resolved the offer): a rejection listed node by node can then be written from the
    request's bytes (:func:`extender.rejection.listed_rejection_body`)."""


def reject(offered: Sequence[str], reason: str, unresolvable: bool = False) -> FilterDecision:
    """No node passes; every offered node carries the reason, which kube-scheduler shows in
    the pod's events. Unresolvable reasons keep preemption from trying; they, and the reasons
    preemption cannot help with (:data:`ONE_ENTRY_CODES`), go on the wire as one entry."""
    one_entry = unresolvable or code_in(reason) in ONE_ENTRY_CODES
    reasons = SameReason(offered, reason, one_entry)
    if unresolvable:
        return FilterDecision([], unresolvable=reasons)
    return FilterDecision([], failed=reasons)


def code_in(text: str) -> str:
    """The code of a :func:`waiting_text` message (``gang ml/x [code]: ...``); '' for any other
    text."""
    head, sep, rest = text.partition(" [")
    code, close, _ = rest.partition("]: ")
    keyed = head.startswith("gang ") and " " not in head[len("gang ") :]
    return code if keyed and sep and close else ""


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
