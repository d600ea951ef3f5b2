"""The decision log: one structured line per plan, re-plan, reservation expiry, bind and
preemption, so an operator can reconstruct from the logs alone where each gang went and why.

The planner calls one method per kind of event (with its lock held) and this module does the
rest: it builds the line's fields (gang, queue, tenant, nodes, level and domain, cost terms,
solver, time), logs them on the ``phalanx.decisions`` logger and feeds the histograms that
``/metrics`` exports (start latency, placement cost). Plain text by default; ``phalanx serve
--log-format json`` (or ``logFormat: json``) turns every log line of the process into one JSON
object, the decision's fields at the top level.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from phalanx.extender.decision_lines import JSON_TIME_FORMAT, TEXT_FORMAT, DirectLines

if TYPE_CHECKING:
    from phalanx.extender.binding import BindRequest
    from phalanx.extender.records import GangRecord
    from phalanx.scheduler.gang import Gang
    from phalanx.scheduler.placement import Placement
    from phalanx.scheduler.state import Holding

LOGGER_NAME = "phalanx.decisions"
log = logging.getLogger(LOGGER_NAME)
_direct_lines: DirectLines | None = None
"""Set by :func:`configure_logging`: decision lines skip the logging module's machinery while
its handler is the only one on their way (:mod:`extender.decision_lines`)."""
LOG_FORMATS = ("text", "json")
START_LATENCY_BUCKETS_S = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
"""From a gang whose members all arrive at once (sub-second) to one that waited for capacity
for half an hour."""
PLACEMENT_COST_BUCKETS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 16.0, 24.0, 32.0, 64.0)
"""Cost units are H100 NVLink4 = 1; a gang spread through a spine costs about 11 to 13."""


@dataclass
class Buckets:
    """A cumulative-at-export histogram kept by the planner (under its lock), so that the
    ``/metrics`` collector, which reads it at scrape time, works for whichever planner the
    backend holds now (a new leader builds a new one)."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, count)`` pairs as Prometheus wants them, ``+Inf`` last."""
        out, running = [], 0
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += count
            out.append(("+Inf" if math.isinf(bound) else repr(float(bound)), running))
        return out


class DecisionListener(Protocol):
    """Told of every decision the log records, and of every gang whose state changed, with the
    planner's lock held: an implementation only takes note (enqueues) and returns, so that
    what it posts (PodGroup status, Events: :mod:`extender.status_reporter`) never slows a
    filter or a bind."""

    def planned(self, gang: GangRecord, placement: Placement) -> None: ...

    def expired(self, gang: GangRecord | None, ledger_key: str, holding: Holding) -> None: ...

    def bound(self, gang: GangRecord | None, request: BindRequest, error: str) -> None: ...

    def preempted(
        self, preemptor: Gang, victim_plans: Sequence[str], victims: Mapping[str, Sequence[str]]
    ) -> None: ...

    def changed(self, gang_key: str) -> None:
        """Something a gang's status is read from changed (a member came, went or bound, its
        waiting reason or its plans changed)."""
        ...


class DecisionLog:
    """One per planner: logs each decision, keeps the histograms that come from them, and
    passes each decision on to its :attr:`listeners` (the one hook point of the planner)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.listeners: list[DecisionListener] = []
        self.start_latency = Buckets(START_LATENCY_BUCKETS_S)
        """First member seen -> every member bound, per gang."""
        self.placement_cost = Buckets(PLACEMENT_COST_BUCKETS)
        """Total cost of each plan and re-plan."""

    def planned(self, gang: GangRecord, placement: Placement) -> None:
        """A plan was reserved for ``gang``: its first ('plan') or a later one ('replan': the
        whole gang again after a loss or expiry, or members placed on their own)."""
        kind = "replan" if gang.plans_made or placement.gang != gang.key else "plan"
        gang.plans_made += 1
        self.placement_cost.observe(placement.cost.total)
        fields = {
            **_gang_fields(gang),
            "plan": placement.gang,
            "members": [m.member for m in placement.members],
            **_placement_fields(placement),
        }
        self._emit(kind, fields)
        for listener in self.listeners:
            listener.planned(gang, placement)

    def expired(self, gang: GangRecord | None, ledger_key: str, holding: Holding) -> None:
        """A reservation's TTL passed: its unbound members were given back."""
        bound = sorted(holding.bound_members)
        released = [m.member for m in holding.placement.members if m.member not in bound]
        fields = {
            **(_gang_fields(gang) if gang is not None else {"gang": ledger_key.partition("#")[0]}),
            "plan": ledger_key,
            "released": released,
            "kept_bound": bound,
            "reserved_for_s": round(self.clock() - holding.reserved_at_s, 3),
            **_placement_fields(holding.placement),
        }
        self._emit("expiry", fields)
        for listener in self.listeners:
            listener.expired(gang, ledger_key, holding)

    def bound(self, gang: GangRecord | None, request: BindRequest, error: str) -> None:
        """A Binding was posted (``error`` '' when it succeeded); the bind that completes a
        gang also records its start latency."""
        fields: dict[str, Any] = {
            **(_gang_fields(gang) if gang is not None else {}),
            "pod": f"{request.namespace}/{request.name}",
            "node": request.node,
            "gpus": request.annotations.get("phalanx.io/gpu-ids", ""),
            "ok": not error,
        }
        if error:
            fields["error"] = error
        if gang is not None and not error and gang.all_bound_s is None and _all_bound(gang):
            gang.all_bound_s = self.clock()
            latency = max(0.0, gang.all_bound_s - gang.first_seen_s)
            self.start_latency.observe(latency)
            fields["start_latency_s"] = round(latency, 3)
        self._emit("bind", fields)
        for listener in self.listeners:
            listener.bound(gang, request, error)

    def preempted(
        self, preemptor: Gang, victim_plans: Sequence[str], victims: Mapping[str, Sequence[str]]
    ) -> None:
        """The preemption policy chose whole gangs to make room for ``preemptor``."""
        fields = {
            "gang": preemptor.name,
            "queue": preemptor.queue,
            "tenant": preemptor.tenant,
            "victims": sorted({p.partition("#")[0] for p in victim_plans}),
            "nodes": sorted(victims),
            "pods": sum(len(v) for v in victims.values()),
        }
        self._emit("preemption", fields)
        for listener in self.listeners:
            listener.preempted(preemptor, victim_plans, victims)

    def changed(self, gang_key: str) -> None:
        """A gang's state changed without a decision (not logged): listeners re-read it."""
        for listener in self.listeners:
            listener.changed(gang_key)

    def _emit(self, event: str, fields: dict[str, Any]) -> None:
        fields = {"event": event, **fields, "time": round(self.clock(), 3)}
        if not log.isEnabledFor(logging.INFO):
            return
        direct = _direct_lines
        if direct is not None and direct.route_is_ours(log):
            try:
                direct.write(LOGGER_NAME, fields, lambda: text_line(fields))
                return
            except Exception:  # logging's own path below reports it
                pass
        log.info("%s", text_line(fields), extra={"decision": fields})


SEQUENCES = (list, tuple)


def text_line(fields: Mapping[str, Any]) -> str:
    """``plan gang=ml/llm queue=default nodes=a,b ...``: one ``key=value`` per field."""
    parts = [str(fields.get("event", ""))]
    for key, value in fields.items():
        if key == "event":
            continue
        if isinstance(value, SEQUENCES):
            value = ",".join(map(str, value)) or "-"
        elif isinstance(value, dict):
            value = ",".join([f"{k}:{v}" for k, v in value.items()])
        parts.append(f"{key}={value}")
    return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """Every log record as one JSON object; a decision's fields go to the top level (the
    record's own level is ``severity``: ``level`` is the fabric level of a placement)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": self.formatTime(record, JSON_TIME_FORMAT),
            "severity": record.levelname,
            "logger": record.name,
        }
        decision = getattr(record, "decision", None)
        if isinstance(decision, dict):
            doc.update(decision)
        else:
            doc["message"] = record.getMessage()
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def configure_logging(log_format: str) -> None:
    """Set up the process's logging for ``phalanx serve`` in ``text`` or ``json``.

    Neither format shows where a call was made or from which thread or process, so records
    skip gathering it (the logging HOWTO's "Optimization" switches): a plan's line is written
    with the filter's reply, and finding the caller's frame was a third of the record's cost."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    global _direct_lines
    _direct_lines = DirectLines(handler, json=log_format == "json")


def _gang_fields(gang: GangRecord) -> dict[str, Any]:
    hints = gang.hints
    return {
        "gang": gang.key,
        "queue": hints.queue if hints is not None else "default",
        "tenant": (hints.tenant if hints is not None else "") or gang.ref.namespace,
    }


def _placement_fields(placement: Placement) -> dict[str, Any]:
    return {
        "nodes": placement.node_names,
        "level": placement.level,
        "domain": placement.domain,
        "cost": {k: round(v, 4) for k, v in placement.cost.as_dict().items()},
        "solver": placement.solver,
    }


def _all_bound(gang: GangRecord) -> bool:
    quorum = gang.ref.min_member or len(gang.members)
    bound = sum(1 for p in gang.members.values() if p.node)
    return bound >= quorum and bound == len(gang.members)
