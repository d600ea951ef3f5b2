"""One scheduling cycle: order the pending gangs, then admit, place, accept, start or preempt.

The cycle is the only place where the queue policy, the placement engine and the preemption
policy meet, and it is the same code for the simulator and the extender. Per gang, in the
queue policy's order:

1. ``admit`` (quota, fairness): a refusal only makes this gang wait;
2. place it against the live state (the engine never mutates it); where the Permit plugin keeps
   nodes for gangs it holds, around those nodes first (on a snapshot without them), and on
   them only when it fits nowhere else;
3. ``permit`` (a Permit plugin, if configured: hold it for a better domain) and ``accept``
   with the placement in hand (backfill's reservation check), then take it in the state:
   ``assign``, or ``reserve`` with a TTL while the extender binds the pods;
4. if it does not fit, ask the preemption policy for a set of whole gangs to evict. The plan is
   checked on a copy of the state before anything is released, so no gang is ever evicted
   unless the preemptor then fits; victims are released here and reported for requeueing;
5. if it still waits, ``after_blocked`` says whether later gangs may try (strict FIFO says no,
   backfill plans a reservation and says yes).

Every gang that does not start gets a reason in :attr:`CycleOutcome.waiting`, its code (the
vocabulary of :mod:`scheduler.reasons`) in :attr:`CycleOutcome.codes`, and, when it did not
fit, the engine's answer in :attr:`CycleOutcome.unplaced`. Expiring reservations is the
caller's job (``ClusterState.expire``), so that it can requeue them.

Every decision goes through this one door, configured by one :class:`CycleConfig`: first
plans and their preemptions (:meth:`SchedulingCycle.run`; the extender evicts the victims the
cycle chose, whole gangs, where kube-scheduler would delete one node's pods), and members placed
after their gang's plan (the extender's late members and re-plans, run as one-member gangs
through the same admission). A caller that placed, admitted or picked victims by itself would
decide differently from the simulator for the same gangs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from phalanx.scheduler import engine
from phalanx.scheduler.gang import Gang, GangSpecError
from phalanx.scheduler.interfaces import (
    PermitPlugin,
    PlaceFunction,
    PlacementScorer,
    PreemptionDecision,
    PreemptionPolicy,
    QueueContext,
    QueuePolicy,
    RunningGang,
    StateObserver,
)
from phalanx.scheduler.placement import Placement, PlacementResult, Unplaceable
from phalanx.scheduler.reasons import Reason, code_of
from phalanx.scheduler.running_view import CycleRunning
from phalanx.scheduler.state import ClusterState, LedgerError
from phalanx.scheduler.unplaced_cache import UnplacedCache
from phalanx.topology.compiled import CapacityError

DEFAULT_TIME_LIMIT_S = 2.0
"""The exact solver's time limit when a caller configures none (the engine's default)."""


@dataclass(frozen=True)
class CycleConfig:
    """Everything a placement decision depends on besides the state and the queue policy, set
    once per caller so that the simulator and the extender cannot drift apart (the extender's
    cycle once dropped the solver's time limit and placed members outside the cycle)."""

    solver: str = "fast"
    time_limit_s: float = DEFAULT_TIME_LIMIT_S
    scorer: PlacementScorer | None = None
    preemption: PreemptionPolicy | None = None
    permit: PermitPlugin | None = None
    """Asked before the queue policy's ``accept`` whether a gang that fits starts now."""


@dataclass
class CycleOutcome:
    started: list[tuple[Gang, Placement]] = field(default_factory=list)
    preempted: list[PreemptionDecision] = field(default_factory=list)
    """Executed decisions; their victims were released from the state and must be requeued."""
    waiting: dict[str, str] = field(default_factory=dict)
    """Gang name -> why it did not start this cycle."""
    codes: dict[str, str] = field(default_factory=dict)
    """Gang name -> the :class:`~scheduler.reasons.Reason` of its ``waiting`` entry."""
    unplaced: dict[str, Unplaceable] = field(default_factory=dict)
    """Gang name -> the engine's answer, for the gangs that wait because they did not fit
    (a caller can ask whether they ever could: :func:`scheduler.feasibility.never_fits`)."""

    def wait(self, gang: str, code: str, why: str) -> None:
        self.waiting[gang] = why
        self.codes[gang] = code

    @property
    def evicted(self) -> list[str]:
        return [v for d in self.preempted for v in d.victims]


class SchedulingCycle:
    def __init__(
        self,
        state: ClusterState,
        queue: QueuePolicy,
        preemption: PreemptionPolicy | None = None,
        scorer: PlacementScorer | None = None,
        solver: str = "fast",
        *,
        place: PlaceFunction | None = None,
        time_limit_s: float = DEFAULT_TIME_LIMIT_S,
        unplaced: UnplacedCache | None = None,
        permit: PermitPlugin | None = None,
    ) -> None:
        """``place`` replaces the placement engine (what-if tools and tests); by default the
        cycle calls :func:`scheduler.engine.place` with ``solver``, ``scorer`` and
        ``time_limit_s``. ``unplaced`` remembers gangs that did not fit the live state until
        its free capacity changes (:mod:`scheduler.unplaced_cache`)."""
        self.state = state
        self.queue = queue
        self.preemption = preemption
        self.scorer = scorer
        self.solver = solver
        self.time_limit_s = time_limit_s
        self._place = place if place is not None else self._engine_place
        self.unplaced = unplaced
        self.permit = permit
        self._around: tuple[tuple[int, bytes], ClusterState] | None = None
        """The live state without the nodes the permit keeps, for its change count and
        those nodes (rebuilt when either changes)."""

    @classmethod
    def from_config(
        cls,
        state: ClusterState,
        queue: QueuePolicy,
        config: CycleConfig,
        *,
        place: PlaceFunction | None = None,
        unplaced: UnplacedCache | None = None,
    ) -> SchedulingCycle:
        """The cycle every caller builds from its one :class:`CycleConfig`."""
        return cls(
            state,
            queue,
            config.preemption,
            config.scorer,
            config.solver,
            place=place,
            time_limit_s=config.time_limit_s,
            unplaced=unplaced,
            permit=config.permit,
        )

    def _engine_place(self, gang: Gang, state: ClusterState) -> PlacementResult:
        return engine.place(
            gang, state, solver=self.solver, scorer=self.scorer, time_limit_s=self.time_limit_s
        )

    def place(self, gang: Gang, state: ClusterState) -> PlacementResult:
        cache = self.unplaced if state is self.state else None
        if cache is not None and (known := cache.get(gang, state)) is not None:
            return known
        result = self._place(gang, state)
        if (
            cache is not None
            and isinstance(result, Unplaceable)
            and result.constraint != Reason.TIME_LIMIT  # another try may finish in time
        ):
            cache.put(gang, state, result)
        return result

    def run(
        self,
        pending: Sequence[Gang],
        running: Sequence[RunningGang],
        now_s: float,
        attained_gpu_s: dict[str, float] | None = None,
        reserve_ttl_s: float | None = None,
        *,
        also_waiting: Sequence[Gang] = (),
    ) -> CycleOutcome:
        """Try ``pending`` in the queue policy's order. ``also_waiting`` are gangs that wait
        as well but are not tried now (the extender placing one late member): admission sees
        them in ``ctx.pending``, as it would in a full cycle."""
        live = CycleRunning(running)
        ctx = self.context([*pending, *also_waiting], live, now_s, attained_gpu_s)
        outcome = CycleOutcome()
        ordered = self.queue.order(pending, ctx)
        for i, gang in enumerate(ordered):
            blocked = self._try(gang, ctx, live, outcome, reserve_ttl_s)
            if blocked is not None and not self.queue.after_blocked(gang, blocked, ctx):
                for position, later in enumerate(ordered[i + 1 :], start=i + 2):
                    outcome.wait(
                        later.name,
                        Reason.WAITING_BEHIND,
                        f"waiting behind blocked gang {gang.name!r} (position {position} of "
                        f"{len(ordered)} in the queue)",
                    )
                break
        return outcome

    def context(
        self,
        pending: Sequence[Gang],
        running: Sequence[RunningGang],
        now_s: float,
        attained_gpu_s: dict[str, float] | None = None,
    ) -> QueueContext:
        """What the policies see, built one way for every decision (``running`` is kept, not
        copied: the cycle appends the gangs it starts)."""
        # the Protocol's own test (isinstance) takes about 10 us, once per cycle; this is the
        # same test: the scorer has a bind_state that is not None
        observer: StateObserver | None = (
            self.scorer if getattr(self.scorer, "bind_state", None) is not None else None
        )
        if observer is not None:
            observer.bind_state(self.state)
        return QueueContext(
            now_s=now_s,
            state=self.state,
            running=running,
            attained_gpu_s=dict(attained_gpu_s or {}),
            pending=list(pending),
            place=self.place,
        )

    # ------------------------------------------------------------------ one gang
    def _try(
        self,
        gang: Gang,
        ctx: QueueContext,
        live: CycleRunning,
        outcome: CycleOutcome,
        ttl_s: float | None,
    ) -> PlacementResult | None:
        """Start ``gang`` if possible; returns the failed placement when it is blocked for
        lack of room (the case ``after_blocked`` is about), else None."""
        wait = outcome.wait
        if gang.name in self.state.holdings:
            wait(gang.name, Reason.ALREADY_PLACED, "already holds a placement")
            return None
        refusal = self.queue.admit(gang, ctx)
        if refusal is not None:
            wait(gang.name, Reason.QUOTA, refusal)
            return None
        try:
            result = self._place_live(gang, ctx.now_s)
        except GangSpecError as err:
            wait(gang.name, Reason.INVALID_SPEC, f"invalid gang: {err}")
            return None
        if isinstance(result, Placement):
            held = self.permit.permit(gang, result, ctx) if self.permit is not None else None
            if held is not None:
                wait(gang.name, Reason.LINK_HOLD, held)
                return None
            refusal = self.queue.accept(gang, result, ctx)
            if refusal is None:
                self._start(gang, result, ctx.now_s, live, outcome, ttl_s)
            else:
                # backfill: starting it would delay the reserved head of the queue
                wait(gang.name, Reason.WAITING_BEHIND, refusal)
            return None
        wait(gang.name, code_of(result.constraint), result.reason)
        outcome.unplaced[gang.name] = result
        if self.preemption is None:
            return result
        decision = self.preemption.select_victims(gang, ctx, self.place)
        if decision is None:
            return result
        problem = self._check_plan(gang, decision, ctx)
        if problem is None:
            problem = self.queue.accept(gang, decision.placement, ctx)
        if problem is not None:
            wait(
                gang.name,
                code_of(result.constraint),
                f"{result.reason}; preemption not taken: {problem}",
            )
            return result
        for victim in decision.victims:
            self.state.release(victim)
        live.keep(lambda r: r.gang.name not in decision.victims)
        outcome.preempted.append(decision)
        self._start(gang, decision.placement, ctx.now_s, live, outcome, ttl_s)
        return None

    def _place_live(self, gang: Gang, now_s: float) -> PlacementResult:
        """Where ``gang`` goes on the live state: around the nodes the Permit plugin keeps for
        the gangs it holds when it fits there, else wherever it fits (keeping them idle while
        work waits would cost more than the hold is worth)."""
        kept = self.permit.kept_nodes(gang, now_s) if self.permit is not None else None
        if kept is not None and kept.size:
            key = (self.state.changes, kept.tobytes())
            if self._around is None or self._around[0] != key:
                self._around = (key, self.state.without_nodes(kept))
            around = self.place(gang, self._around[1])
            if isinstance(around, Placement):
                return around
        return self.place(gang, self.state)

    def _check_plan(
        self, gang: Gang, decision: PreemptionDecision, ctx: QueueContext
    ) -> str | None:
        """Why ``decision`` must not be executed, or None: it evicts running gangs only,
        never the preemptor, and the placement fits once the victims are gone."""
        running = {r.gang.name for r in ctx.running}
        if decision.preemptor != gang.name or decision.placement.gang != gang.name:
            return f"the plan is for gang {decision.preemptor!r}"
        strangers = [v for v in decision.victims if v not in running or v == gang.name]
        if strangers or not decision.victims:
            return f"victims {strangers or '(none)'} are not running gangs"
        what_if = self.state.copy()
        try:
            for victim in decision.victims:
                what_if.release(victim)
            what_if.reserve(decision.placement, ctx.now_s)
        except (CapacityError, LedgerError) as err:
            return f"the placement does not fit after the evictions ({err})"
        return None

    def _start(
        self,
        gang: Gang,
        placement: Placement,
        now_s: float,
        live: CycleRunning,
        outcome: CycleOutcome,
        ttl_s: float | None,
    ) -> None:
        try:
            if ttl_s is None:
                self.state.assign(placement, now_s)
            else:
                self.state.reserve(placement, now_s, ttl_s)
        except (CapacityError, LedgerError) as err:
            outcome.wait(gang.name, Reason.CAPACITY, f"placement could not be taken: {err}")
            return
        estimate = gang.runtime_estimate_s
        end_s = now_s + estimate if estimate is not None else math.inf
        live.append(RunningGang(gang, placement, now_s, end_s))
        outcome.waiting.pop(gang.name, None)
        outcome.codes.pop(gang.name, None)
        outcome.unplaced.pop(gang.name, None)
        outcome.started.append((gang, placement))
