"""Kubernetes Events about gangs: which ones, on which objects, and how repeats are folded.

One vocabulary: a waiting gang's event has its reason code (:class:`scheduler.reasons.Reason`:
``waiting_for_members``, ``quota``, ``capacity``, ``fragmented``, ``never_fits``...) as the
reason and the message kube-scheduler shows as the note; decisions add ``Planned``, ``Bound``,
``ReservationExpired`` and ``preempted``. A gang's events go on its group object when it has
one (scheduler-plugins, Volcano, native PodGroups), on its member pods otherwise (Phalanx
annotations, Kueue pod groups).

A waiting reason is told when it changes, not on every retry: kube-scheduler asks again and
again about a member that waits, and each answer is the same. What is told again within
:data:`EVENT_WINDOW_S` (same object, type, reason and note) is folded into one event as
kube-scheduler's event recorder does (``events.k8s.io/v1`` series): the count goes up, and
the series is written at most once per :data:`SERIES_INTERVAL_S`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from phalanx.extender.gang_status import GangPhase, GangStatus, PodTarget
from phalanx.extender.gangs import GROUP_KINDS
from phalanx.scheduler.reasons import Reason

NORMAL = "Normal"
WARNING = "Warning"
PLANNED = "Planned"
BOUND = "Bound"
RESERVATION_EXPIRED = "ReservationExpired"
WARNING_REASONS = frozenset(
    {Reason.NEVER_FITS, Reason.INVALID_SPEC, Reason.PREEMPTED, RESERVATION_EXPIRED}
)
TOLD_WHILE_PLANNED = frozenset({Reason.PREEMPTING, Reason.BIND_BARRIER})
"""A planned gang's codes worth an event (``reserved`` is the ``Planned`` event itself)."""
EVENT_WINDOW_S = 600.0
"""Repeats within this long of the last one fold into its series."""
SERIES_INTERVAL_S = 30.0
MAX_NOTE = 1024
"""``events.k8s.io/v1`` note limit."""
KEPT = 8192
"""Events (and last codes per object) remembered before the oldest are forgotten."""


@dataclass(frozen=True)
class ObjectRef:
    """What an event is about: ``regarding`` in events.k8s.io/v1."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str = ""

    @property
    def key(self) -> tuple[str, ...]:
        return (self.kind, self.namespace, self.name, self.uid)

    def as_dict(self) -> dict[str, str]:
        doc = {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
        }
        if self.uid:
            doc["uid"] = self.uid
        return doc


@dataclass(frozen=True)
class GangEvent:
    regarding: ObjectRef
    type: str
    reason: str
    note: str
    action: str

    @property
    def key(self) -> tuple[str, ...]:
        return (*self.regarding.key, self.type, self.reason, self.note)


def pod_ref(pod: PodTarget) -> ObjectRef:
    return ObjectRef("v1", "Pod", pod.namespace, pod.name, pod.uid)


def group_ref(status: GangStatus) -> ObjectRef | None:
    group = status.group
    if group is None:
        return None
    meta = group.get("metadata") or {}
    # the items of a list of a built-in type carry no apiVersion: the kind's preferred one
    kind = next((k for k in GROUP_KINDS if k.source == status.source), None)
    fallback = f"{kind.group}/{kind.version}" if kind is not None else ""
    return ObjectRef(
        str(group.get("apiVersion") or fallback),
        str(group.get("kind") or "PodGroup"),
        status.namespace,
        status.name,
        str(meta.get("uid") or ""),
    )


def gang_event(
    status: GangStatus,
    reason: str,
    note: str,
    action: str,
    pods: tuple[PodTarget, ...] | None = None,
) -> list[GangEvent]:
    """The event on the gang's group, or on ``pods`` (every member by default) without one."""
    kind = WARNING if reason in WARNING_REASONS else NORMAL
    note = note[:MAX_NOTE]
    group = group_ref(status)
    if group is not None:
        return [GangEvent(group, kind, reason, note, action)]
    return [GangEvent(pod_ref(p), kind, reason, note, action) for p in pods or status.pods]


class ReasonChanges:
    """The last code told per object: a waiting reason is an event when it changes (and for a
    member that has not been told one yet)."""

    def __init__(self) -> None:
        self._told: dict[tuple[str, ...], str] = {}

    def events(self, status: GangStatus) -> list[GangEvent]:
        code = status.code
        if status.phase is GangPhase.WAITING:
            told = bool(code)
        else:
            told = status.phase is GangPhase.PLANNED and code in TOLD_WHILE_PLANNED
        pending = tuple(p for p in status.pods if not p.node)
        out = []
        for event in gang_event(status, code, status.message, "Scheduling", pending):
            key = event.regarding.key
            if self._told.get(key) == (code if told else ""):
                continue
            self._told[key] = code if told else ""
            if told:
                out.append(event)
        _trim(self._told)
        return out

    def told(self, events: list[GangEvent]) -> None:
        """These events were told by a decision: the same code from the status is not."""
        for event in events:
            self._told[event.regarding.key] = event.reason


@dataclass
class _Series:
    name: str
    count: int
    last_s: float
    posted_count: int
    posted_s: float


@dataclass(frozen=True)
class EventWrite:
    """Create event ``name`` (count 1), or write its series (count >= 2)."""

    name: str
    event: GangEvent
    count: int
    first_s: float
    last_s: float


@dataclass
class EventSeries:
    """Folds repeats as kube-scheduler's recorder does: the first occurrence is created, the
    second starts a series at once, later ones raise its count and are written at most once
    per :data:`SERIES_INTERVAL_S` (:meth:`due` writes what is left)."""

    window_s: float = EVENT_WINDOW_S
    interval_s: float = SERIES_INTERVAL_S
    _seen: dict[tuple[str, ...], _Series] = field(default_factory=dict)
    _first: dict[str, float] = field(default_factory=dict)
    _events: dict[str, GangEvent] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=itertools.count)
    _unposted: int = 0
    """How many series have repeats not written yet: :meth:`waiting` and :meth:`due` run on
    every turn of the reporter's thread and skip their pass over up to ``KEPT`` series when
    there are none."""

    def record(self, event: GangEvent, now: float) -> EventWrite | None:
        """What to write for ``event`` seen at ``now``; None while its series waits."""
        seen = self._seen.get(event.key)
        if seen is None or now - seen.last_s > self.window_s:
            if seen is not None and seen.count > seen.posted_count:
                self._unposted -= 1  # the old series' repeats go unwritten, as before
            name = f"{event.regarding.name}.{int(now * 1e9):x}{next(self._ids) % 4096:03x}"
            name = name[-253:].lstrip(".-") or "phalanx"
            self._seen[event.key] = _Series(name, 1, now, 1, now)
            self._first[name], self._events[name] = now, event
            self._trim()
            return EventWrite(name, event, 1, now, now)
        if seen.count == seen.posted_count:
            self._unposted += 1
        seen.count += 1
        seen.last_s = now
        if seen.count == 2 or now - seen.posted_s >= self.interval_s:
            return self._write(seen, now)
        return None

    def due(self, now: float) -> list[EventWrite]:
        """Series with uncounted repeats whose interval has passed."""
        if not self._unposted:
            return []
        return [
            self._write(s, now)
            for s in list(self._seen.values())
            if s.count > s.posted_count and now - s.posted_s >= self.interval_s
        ]

    def waiting(self) -> bool:
        """Whether a series has repeats not written yet."""
        return self._unposted > 0

    def _write(self, seen: _Series, now: float) -> EventWrite:
        if seen.count > seen.posted_count:
            self._unposted -= 1
        seen.posted_count, seen.posted_s = seen.count, now
        event = self._events[seen.name]
        return EventWrite(seen.name, event, seen.count, self._first[seen.name], seen.last_s)

    def _trim(self) -> None:
        while len(self._seen) > KEPT:
            key = next(iter(self._seen))
            dropped = self._seen.pop(key)
            if dropped.count > dropped.posted_count:
                self._unposted -= 1
            name = dropped.name
            self._first.pop(name, None)
            self._events.pop(name, None)


def _trim(table: dict[tuple[str, ...], str]) -> None:
    while len(table) > KEPT:
        del table[next(iter(table))]
