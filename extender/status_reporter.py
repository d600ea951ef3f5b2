"""Writes what the planner decides back to the cluster: PodGroup status and Events.

The planner tells the reporter (a :class:`~extender.decision_log.DecisionListener`) which gangs
changed and what it decided, with its lock held; the reporter only notes the gang's key and
wakes its thread. That thread, a moment later (so a burst of changes is read once), takes the
planner's lock just long enough to snapshot the changed gangs (:mod:`extender.gang_status`),
then renders each group's status in its dialect (:mod:`extender.group_status`) and the Events
(:mod:`extender.gang_events`), and hands them to a sink: the Kubernetes one posts them from
worker threads (:mod:`extender.kube_status`), the recording one (dry-run, tests) keeps them.
So a gang gets at most one status patch per change, the latest state wins, and nothing of it
runs on the request path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from phalanx.extender.gang_events import (
    BOUND,
    PLANNED,
    RESERVATION_EXPIRED,
    EventSeries,
    EventWrite,
    GangEvent,
    ReasonChanges,
    gang_event,
)
from phalanx.extender.gang_status import GangPhase, GangStatus, PodTarget, gang_status
from phalanx.extender.group_status import GroupPatch, group_patch
from phalanx.scheduler.reasons import Reason

if TYPE_CHECKING:
    from phalanx.extender.binding import BindRequest
    from phalanx.extender.planner import Planner
    from phalanx.extender.records import GangRecord
    from phalanx.scheduler.gang import Gang
    from phalanx.scheduler.placement import Placement
    from phalanx.scheduler.state import Holding

log = logging.getLogger(__name__)

GATHER_S = 0.05
"""How long the thread waits after a wake-up for more changes of the same burst."""
IDLE_EXIT_S = 30.0
"""The thread ends after this long with nothing to do (and starts again when needed)."""
KEPT = 8192
RECORDED = 1000
"""Patches and events a recording sink keeps (the newest)."""
PLACED = (GangPhase.BOUND, GangPhase.RUNNING)


class ReportSink(Protocol):
    """Where status patches and events go; called from the reporter's thread."""

    def patch_group(self, patch: GroupPatch) -> None: ...

    def write_event(self, write: EventWrite) -> None: ...


@dataclass
class RecordingSink:
    """Keeps what would be written (``phalanx serve --dry-run``, tests)."""

    patches: deque[GroupPatch] = field(default_factory=lambda: deque(maxlen=RECORDED))
    events: deque[EventWrite] = field(default_factory=lambda: deque(maxlen=RECORDED))

    def patch_group(self, patch: GroupPatch) -> None:
        self.patches.append(patch)

    def write_event(self, write: EventWrite) -> None:
        self.events.append(write)

    def summary(self, shown: int = 100) -> dict[str, Any]:
        """The newest patches and events, for ``/debug/state``."""
        return {
            "status_patches": [
                {"group": "/".join(p.key), "status": p.body["status"]}
                for p in list(self.patches)[-shown:]
            ],
            "events": [
                {
                    "name": w.name,
                    "regarding": w.event.regarding.as_dict(),
                    "type": w.event.type,
                    "reason": w.event.reason,
                    "note": w.event.note,
                    "count": w.count,
                }
                for w in list(self.events)[-shown:]
            ],
        }


@dataclass(frozen=True)
class _Decision:
    """A decision to tell: its reason, note and the members it concerns ('' for all)."""

    gang_key: str
    reason: str
    note: str
    pods: tuple[str, ...] = ()
    status: GangStatus | None = None
    """Read at decision time, for gangs that may be gone by the next flush (preempted)."""


class GangReporter:
    """A :class:`~extender.decision_log.DecisionListener` of the planner it is attached to."""

    def __init__(
        self,
        sink: ReportSink,
        clock: Callable[[], float] = time.time,
        gather_s: float = GATHER_S,
    ) -> None:
        self.sink = sink
        self.clock = clock
        self.gather_s = gather_s
        self._planner: Planner | None = None
        self._lock = threading.Lock()
        self._dirty: set[str] = set()
        self._decisions: list[_Decision] = []
        self._wake = threading.Event()
        self._running = False
        self._stopped = False
        self._flush_lock = threading.Lock()
        self._reasons = ReasonChanges()
        self._series = EventSeries()
        self._phases: dict[str, GangPhase] = {}
        self._posted: dict[tuple[str, str, str], dict[str, Any]] = {}

    # ------------------------------------------------------------------ wiring
    def attach(self, planner: Planner) -> None:
        """Report ``planner``'s gangs from now on (a new leader's planner replaces the old)."""
        with self._lock:
            old, self._planner = self._planner, planner
        if old is not None and self in old.decisions.listeners:
            old.decisions.listeners.remove(self)
        planner.decisions.listeners.append(self)
        with planner.lock:
            for key in planner.gangs:
                self.changed(key)

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    # ------------------------------------------------------------------ the listener
    def changed(self, gang_key: str) -> None:
        with self._lock:
            self._dirty.add(gang_key)
        self._notify()

    def planned(self, gang: GangRecord, placement: Placement) -> None:
        members = tuple(m.member for m in placement.members)
        nodes = ", ".join(placement.node_names)
        note = (
            f"gang {gang.key}: planned {len(members)} member(s) on {nodes} "
            f"({placement.level} {placement.domain}), cost {placement.cost.total:.2f}, "
            f"solver {placement.solver}"
        )
        self._decide(_Decision(gang.key, PLANNED, note, members))

    def expired(self, gang: GangRecord | None, ledger_key: str, holding: Holding) -> None:
        if gang is None:
            return
        released = tuple(
            m.member for m in holding.placement.members if m.member not in holding.bound_members
        )
        note = (
            f"gang {gang.key}: the reservation of plan {ledger_key} expired before every member "
            f"bound; released {', '.join(released) or 'nothing'}"
        )
        self._decide(_Decision(gang.key, RESERVATION_EXPIRED, note, released))

    def bound(self, gang: GangRecord | None, request: BindRequest, error: str) -> None:
        if gang is None or error:
            return
        gpus = request.annotations.get("phalanx.io/gpu-ids", "")
        note = f"gang {gang.key}: bound to {request.node}" + (f" (GPUs {gpus})" if gpus else "")
        self._decide(_Decision(gang.key, BOUND, note, (request.name,)))

    def preempted(
        self, preemptor: Gang, victim_plans: Sequence[str], victims: Mapping[str, Sequence[str]]
    ) -> None:
        planner = self._planner
        if planner is None:
            return
        for key in sorted({p.partition("#")[0] for p in victim_plans}):
            note = f"gang {key} [preempted]: evicted to make room for gang {preemptor.name}"
            # read now: its pods are being evicted and the gang may be gone by the next flush
            status = gang_status(planner, key, evicted=True)
            self._decide(_Decision(key, Reason.PREEMPTED.value, note, status=status))

    def _decide(self, decision: _Decision) -> None:
        with self._lock:
            self._decisions.append(decision)
            self._dirty.add(decision.gang_key)
        self._notify()

    # ------------------------------------------------------------------ the thread
    def _notify(self) -> None:
        if self._wake.is_set():
            # a wake-up not yet taken: the thread is running (it only ends with none pending)
            # and takes every change noted before it clears the wake-up, this one included
            return
        with self._lock:
            self._wake.set()
            if self._running or self._stopped:
                return
            self._running = True
        threading.Thread(target=self._run, name="gang-status", daemon=True).start()

    def _run(self) -> None:
        while not self._stopped:
            waiting = self._series.waiting()
            woke = self._wake.wait(self._series.interval_s if waiting else IDLE_EXIT_S)
            if not woke and not waiting:
                with self._lock:
                    if not self._wake.is_set():
                        self._running = False
                        return
                continue
            if woke:
                time.sleep(self.gather_s)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the thread must outlive one bad flush
                log.exception("writing gang status and events failed")
        with self._lock:
            self._running = False

    def flush(self) -> None:
        """Read the changed gangs and write their status and events (the thread does this;
        tests call it to write at once)."""
        with self._flush_lock:
            with self._lock:
                dirty, self._dirty = self._dirty, set()
                decisions, self._decisions = self._decisions, []
                planner = self._planner
            statuses: dict[str, GangStatus | None] = {}
            if planner is not None and dirty:
                with planner.lock:
                    statuses = {key: gang_status(planner, key) for key in sorted(dirty)}
            now = self.clock()
            events: list[GangEvent] = []
            for decision in decisions:
                events += self._decision_events(decision, statuses.get(decision.gang_key))
            stamp = rfc3339(now)
            for key, status in statuses.items():
                if status is None:
                    self._phases.pop(key, None)
                    continue
                events += self._status_events(status)
                patch = group_patch(status, stamp)
                if patch is not None and self._posted.get(patch.key) != patch.body:
                    self._posted[patch.key] = patch.body
                    self.sink.patch_group(patch)
            _trim(self._posted)
            _trim(self._phases)
            for event in events:
                write = self._series.record(event, now)
                if write is not None:
                    self.sink.write_event(write)
            for write in self._series.due(now):
                self.sink.write_event(write)

    def _decision_events(self, decision: _Decision, status: GangStatus | None) -> list[GangEvent]:
        status = decision.status or status
        if status is None:
            return []
        if decision.reason == BOUND and status.group is not None:
            return []  # a group is told once its quorum is bound (see _status_events)
        pods = tuple(p for p in status.pods if p.name in decision.pods) or None
        if decision.pods and pods is None:
            pods = tuple(PodTarget(status.namespace, name, "") for name in decision.pods)
        events = gang_event(status, decision.reason, decision.note, "Scheduling", pods)
        if decision.reason == Reason.PREEMPTED:
            self._reasons.told(events)
        return events

    def _status_events(self, status: GangStatus) -> list[GangEvent]:
        before = self._phases.get(status.key)
        self._phases[status.key] = status.phase
        events = self._reasons.events(status)
        if (
            status.group is not None
            and status.phase in PLACED
            and before is not None
            and before not in PLACED
        ):
            note = f"gang {status.key}: {status.bound}/{status.quorum} members bound"
            events += gang_event(status, BOUND, note, "Binding")
        return events


def rfc3339(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _trim(table: dict[Any, Any]) -> None:
    while len(table) > KEPT:
        del table[next(iter(table))]
