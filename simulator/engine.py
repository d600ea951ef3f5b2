"""The discrete-event engine: trace jobs through the shared scheduling cycle.

Every placement decision is made by :class:`scheduler.cycle.SchedulingCycle` with policies
from :mod:`policies.registry`, exactly as the extender makes them; the engine only keeps the
clock, turns jobs into gangs, and books starts, completions, preemptions and reservations.

Events (see :mod:`simulator.events`): arrivals, completions, reservation binds and expiries,
and scheduling ticks when a scheduling interval is set. Event-driven by default: one cycle
after the events of each distinct time, when something changed and gangs are waiting.
A run depends only on its inputs and seed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
from phalanx.scheduler.gang import Gang
from phalanx.scheduler.interfaces import (
    PlacementScorer,
    QueueContext,
    RunningGang,
    RuntimeObserver,
)
from phalanx.scheduler.placement import Placement
from phalanx.scheduler.reasons import Reason
from phalanx.scheduler.reservations import ReservationBook
from phalanx.scheduler.state import ClusterState
from phalanx.simulator import wait_reasons
from phalanx.simulator.config import SimulationConfig
from phalanx.simulator.events import EventKind, EventQueue
from phalanx.simulator.fragmentation import FragmentationMeter
from phalanx.simulator.gangs import GangFactory
from phalanx.simulator.job import TraceWorkload
from phalanx.simulator.placement_memo import PlacementMemo, comm_cost
from phalanx.simulator.policy_setup import (
    TimeDrivenQueuePolicy,
    queue_policy_options,
    queue_preemption,
)
from phalanx.simulator.records import JobRun, JobStatus, RunningSet, SimulationResult
from phalanx.simulator.timeline import Timeline
from phalanx.topology.model import MILLI_PER_GPU, Cluster

BIND_DELAY_STREAM = 1
"""Random stream of the pods' bind delays, apart from the scorers' (which take the seed)."""

MIN_SAMPLE_STEP_S = 60.0
PERCENT = 100


ProgressHook = Callable[[int, int], None]
"""Called as ``hook(jobs_done_now, jobs_total)``: as jobs leave the system in a replay
(completed or rejected, so the bar ends with the run, not with the last arrival) and as they
arrive under the fill protocol (which ends with the last arrival)."""


class Simulation:
    """One run of one workload on one cluster under one configuration."""

    def __init__(
        self,
        workload: TraceWorkload,
        cluster: Cluster,
        config: SimulationConfig,
        *,
        fill_demand: float | None = None,
        progress: ProgressHook | None = None,
    ) -> None:
        from phalanx.policies.registry import get_permit, get_preemption_policy, get_queue_policy
        from phalanx.scheduler.cycle import SchedulingCycle

        config.check()
        self.workload = workload
        self.cluster = cluster
        self.config = config
        self.fill_demand = fill_demand
        self.progress = progress
        self.compiled = cluster.compile()
        self.state = ClusterState(self.compiled)
        self.book = ReservationBook(self.state)
        policy_name, scorer_name = config.policy, config.scorer
        if fill_demand is not None and scorer_name is None and _is_scorer(policy_name):
            policy_name, scorer_name = "fifo", config.policy
        # Jobs are split into pods no larger than the cluster's largest node.
        factory = GangFactory(
            int(self.compiled.gpu_count.max()), config.slowdown, config.oracle_estimates
        )
        self.runs = [
            JobRun(i, job, factory.gang(job), remaining_s=job.duration_s)
            for i, job in enumerate(workload.jobs)
        ]
        gangs = [r.gang for r in self.runs]
        queue_options, self._policy_notes = queue_policy_options(
            policy_name, config.policy_options, workload, int(self.compiled.gpu_usable.sum())
        )
        self.queue = get_queue_policy(policy_name, **queue_options)
        self.queue_policy_name, self.scorer_name = policy_name, scorer_name
        self.scorer = (
            build_scorer(scorer_name, config.scorer_options, config.seed, gangs)
            if scorer_name
            else None
        )
        preemption = queue_preemption(self.queue, policy_name, config, get_preemption_policy)
        self.preemption_name = config.preemption or (
            f"{preemption.name} (the {policy_name} policy's own)" if preemption else None
        )
        self.resume = (
            config.resume_after_preemption
            if config.resume_after_preemption is not None
            else bool(getattr(self.queue, "resume_after_preemption", False))
        )
        self.memo = PlacementMemo(self.state, config.solver, self.scorer)
        self.permit = get_permit(config.permit, **config.permit_options) if config.permit else None
        self.cycle = SchedulingCycle(
            self.state,
            self.queue,
            preemption,
            scorer=self.scorer,
            solver=config.solver,
            place=self.memo.place,
            permit=self.permit,
        )
        self.observers = [p for p in (self.queue, self.permit) if isinstance(p, RuntimeObserver)]
        """Policies that learn run times from completions."""
        self.timed = [p for p in (self.queue, self.permit) if isinstance(p, TimeDrivenQueuePolicy)]
        """Policies that say when their decisions next change with time alone (asked after
        every cycle; a Protocol's isinstance takes about 10 us, so it is asked once here)."""
        self.by_name = {run.gang.name: run for run in self.runs}
        self.events = EventQueue()
        self.pending: dict[str, Gang] = {}
        self.running = RunningSet()
        self.timeline = Timeline(
            capacity_milli=float(self.compiled.gpu_usable.sum() * MILLI_PER_GPU),
            meter=FragmentationMeter(self.compiled, gangs),
            sample_step_s=self._sample_step(),
        )
        self._cycles = 0
        self._events = 0
        self._preemption_events = 0
        self._bind_rng = np.random.default_rng([config.seed, BIND_DELAY_STREAM])
        self._next_percent = 0
        self._dirty = False
        self._wake_s = math.inf

    # ------------------------------------------------------------------ driving
    def run(self) -> SimulationResult:
        started = time.perf_counter()
        runs = self.runs
        next_arrival = 0
        interval = self.config.scheduling_interval_s
        tick_armed = False
        while True:
            t_arrival = (
                runs[next_arrival].job.submit_time_s if next_arrival < len(runs) else math.inf
            )
            self._drop_idle_wakeups()
            t_event = self.events.peek_time() if self.events else math.inf
            now = min(t_arrival, t_event)
            if not math.isfinite(now):
                break
            self.timeline.advance(now, len(self.running), len(self.pending))
            ticked = self._drain(now, below=EventKind.ARRIVAL)
            while next_arrival < len(runs) and runs[next_arrival].job.submit_time_s <= now:
                self._arrive(runs[next_arrival], now)
                next_arrival += 1
                if self.progress and self.fill_demand is not None:
                    self.progress(1, len(runs))
                if self.config.drop_unplaced:
                    self._schedule(now)
            ticked = self._drain(now, below=EventKind.WAKEUP + 1) or ticked
            if interval is None:
                self._schedule(now)
            else:
                if ticked:
                    tick_armed = False
                    self._schedule(now)
                more = next_arrival < len(runs) or self.events or self.pending
                if not tick_armed and self._dirty and more:
                    self.events.push(_next_tick(now, interval, ticked), EventKind.SCHEDULE_TICK)
                    tick_armed = True
        self._finish()
        return SimulationResult(
            workload=self.workload.name,
            cluster=self.cluster.name,
            config=self.config,
            runs=self.runs,
            timeline=self.timeline,
            skipped=self.workload.skipped,
            tenant_guarantees=dict(self.workload.tenant_guarantees),
            cluster_gpus=int(self.compiled.gpu_usable.sum()),
            wall_s=time.perf_counter() - started,
            events=self._events,
            cycles=self._cycles,
            preemption_events=self._preemption_events,
            fill_demand=self.fill_demand,
            notes=self._notes(),
            queue_policy=self.queue_policy_name,
            scorer=self.scorer_name,
            preemption=self.preemption_name,
        )

    def _notes(self) -> list[str]:
        """The loader's assumptions; those about the trace's own cluster only if it ran."""
        own = self.workload.cluster
        if own is None or self.cluster is own:
            return [*self.workload.cluster_notes, *self.workload.notes, *self._policy_notes]
        return [
            f"cluster {self.cluster.name} given instead of the trace's own ({own.name})",
            *self.workload.notes,
            *self._policy_notes,
        ]

    def _drop_idle_wakeups(self) -> None:
        """A wake-up with no gang waiting changes nothing; dropping it keeps it from
        stretching the run past its last completion (and the time averages with it)."""
        while self.events and not self.pending and self.events.peek().kind is EventKind.WAKEUP:
            self.events.pop()
            self._wake_s = math.inf

    def _drain(self, now: float, below: int) -> bool:
        """Handle queued events at ``now`` whose kind sorts below ``below``; True if a
        scheduling tick was among them."""
        ticked = False
        while self.events and self.events.peek_time() <= now:
            if self.events.peek().kind >= below:
                break
            event = self.events.pop()
            self._events += 1
            if event.kind is EventKind.SCHEDULE_TICK:
                ticked = True
                continue
            if event.kind is EventKind.WAKEUP:
                # The queue policy's order changes now (a demotion, a promotion).
                self._wake_s = math.inf
                self._dirty = ticked = True
                continue
            run = self.runs[event.job]
            if event.version != run.version:
                continue
            if event.kind is EventKind.COMPLETION:
                self._complete(run, now)
            elif event.kind is EventKind.BIND:
                self._bind(run, now)
            elif event.kind is EventKind.RESERVATION_EXPIRY:
                self._expire(now)
        return ticked

    # ------------------------------------------------------------------ transitions
    def _arrive(self, run: JobRun, now: float) -> None:
        self._events += 1
        self.timeline.in_system += 1
        self.timeline.arrived_milli += run.gang.gpu_milli_total
        self.pending[run.gang.name] = run.gang
        wait_reasons.enter_queue(run, now)
        self._dirty = True

    def _schedule(self, now: float) -> None:
        if not self.pending or not self._dirty:
            if self.config.drop_unplaced:
                self._sample_fill(now)
            return
        # A gang that can never fit is found when it first fails, and rejected; the cycle
        # then runs again, as the gangs behind it may have waited only for it.
        while self.pending and self._dirty:
            self._dirty = False
            self._run_cycle(now)
        if self.config.drop_unplaced:
            self._sample_fill(now)
        if self.config.check_invariants:
            self.state.check_invariants()

    def _run_cycle(self, now: float) -> None:
        self._cycles += 1
        outcome = self.cycle.run(
            list(self.pending.values()),
            self.running.items,
            now,
            attained_gpu_s=self._attained(now),
            reserve_ttl_s=self.config.reserve_ttl_s,
        )
        evicted = {v: d.preemptor for d in outcome.preempted for v in d.victims}
        self._preemption_events += len(outcome.preempted)
        for gang, placement in outcome.started:
            if gang.name in evicted:
                continue  # started and evicted again within this cycle: still waiting
            run = self.by_name[gang.name]
            del self.pending[gang.name]
            wait_reasons.leave_queue(run, now)
            if self.config.reserve_ttl_s is None:
                self._start(run, placement, now)
            else:
                self._reserve(run, placement, now)
        for victim, preemptor in evicted.items():
            run = self.by_name[victim]
            if victim in self.pending:
                run.preemptions += 1
                run.reason = f"preempted by {preemptor}"
            else:
                self._evict(run, now, preemptor)
        codes = outcome.codes
        for name, reason in outcome.waiting.items():
            run = self.by_name.get(name)
            if run is None or run.status is not JobStatus.QUEUED:
                continue
            run.reason = reason
            code = codes.get(name, Reason.CAPACITY)
            wait_reasons.label(run, code, now)
            hopeless = self.memo.never_fits(run.gang)
            if hopeless is not None:
                if code != Reason.INVALID_SPEC:
                    wait_reasons.label(run, Reason.NEVER_FITS, now)
                del self.pending[name]
                self._retire(run, JobStatus.REJECTED, hopeless, now)
                self._dirty = True
            elif self.config.drop_unplaced:
                del self.pending[name]
                self._retire(run, JobStatus.UNPLACED, reason, now)
        if self.config.drop_unplaced:
            for name in list(self.pending):
                run = self.by_name[name]
                del self.pending[name]
                self._retire(run, JobStatus.UNPLACED, run.reason or "not tried", now)
        self._arm_wakeup(now)

    def _arm_wakeup(self, now: float) -> None:
        """Ask a time-driven queue policy (Tiresias) when its order next changes by itself,
        and a Permit plugin when its next hold ends, and run a cycle then: a gang crossing a
        service threshold is demoted on time, not at the next arrival or completion. On a
        scheduling interval the wake-up waits for the next tick, as every other decision
        does."""
        timed = self.timed
        if not self.pending or not timed:
            return
        ctx = QueueContext(
            now_s=now,
            state=self.state,
            running=self.running.items,
            attained_gpu_s=self._attained(now),
            pending=list(self.pending.values()),
        )
        dues = [due for p in timed if (due := p.next_change_s(ctx)) is not None]
        if not dues:
            return
        due = min(dues)
        interval = self.config.scheduling_interval_s
        if interval is not None:
            due = _next_tick(due, interval, ticked=due <= now)
        if due < self._wake_s:
            self._wake_s = due
            self.events.push(due, EventKind.WAKEUP)

    def _start(self, run: JobRun, placement: Placement, now: float) -> None:
        self._occupy(run, placement, now)
        self._begin(run, now)

    def _occupy(self, run: JobRun, placement: Placement, now: float) -> None:
        """Book the placement: the gang now holds resources (running or reserved)."""
        self._book_placement(run, placement)
        estimate = run.gang.runtime_estimate_s
        expected_end = now + estimate if estimate is not None else math.inf
        self.running.add(RunningGang(run.gang, placement, now, expected_end))
        self.timeline.allocate(run.gang.tenant, run.gang.gpu_milli_total)

    def _begin(self, run: JobRun, now: float) -> None:
        """The gang's pods are bound: its work starts now."""
        run.status = JobStatus.RUNNING
        run.reason = ""
        run.start_s = now
        if math.isnan(run.first_start_s):
            run.first_start_s = now
        if run.job.placement_stretch is not None:
            run.stretch = run.job.placement_stretch(run.gpus_per_node)
        else:
            run.stretch = self.config.slowdown.stretch(run.gang.comm_intensity, run.cost_ratio)
        end = now + self.config.restart_delay_s + run.remaining_s * run.stretch
        if math.isfinite(end):
            self.events.push(end, EventKind.COMPLETION, run.index, run.version)

    def _reserve(self, run: JobRun, placement: Placement, now: float) -> None:
        run.status = JobStatus.RESERVED
        run.reason = ""
        self.book.track(run.gang.name)
        self._occupy(run, placement, now)
        ttl = self.config.reserve_ttl_s or math.inf
        delay = self._bind_delay(len(placement.members))
        if delay < ttl:  # at a tie the expiry runs first (events.py)
            self.events.push(now + delay, EventKind.BIND, run.index, run.version)
        self.events.push(now + ttl, EventKind.RESERVATION_EXPIRY, run.index, run.version)

    def _bind_delay(self, pods: int) -> float:
        """Seconds until the last of ``pods`` is bound (``SimulationConfig``)."""
        mean = self.config.bind_delay_s
        if self.config.bind_delay_distribution == "fixed":
            return mean
        return float(self._bind_rng.exponential(mean, size=pods).max())

    def _bind(self, run: JobRun, now: float) -> None:
        if run.status is not JobStatus.RESERVED:
            return
        self.state.commit(run.gang.name)
        self._begin(run, now)

    def _expire(self, now: float) -> None:
        """Reservations past their TTL are given back, and their gangs queue again from now,
        behind the gangs that waited meanwhile (the extender's rule, one book for both)."""
        for name in self.book.due(now):
            self.state.release(name)
            self.book.requeue(name, now)
            run = self.by_name[name]
            run.gang = replace(
                run.gang, submit_time_s=self.book.queue_time(name, run.gang.submit_time_s)
            )
            run.version += 1
            run.status = JobStatus.QUEUED
            run.reason = "reservation expired before binding"
            run.reservation_expiries += 1
            self.running.remove(name)
            self.timeline.release(run.gang.tenant, run.gang.gpu_milli_total)
            self.pending[name] = run.gang
            wait_reasons.enter_queue(run, now)
            self._dirty = True

    def _complete(self, run: JobRun, now: float) -> None:
        self.state.release(run.gang.name)
        self.running.remove(run.gang.name)
        self.timeline.release(run.gang.tenant, run.gang.gpu_milli_total)
        run.attained_gpu_s += run.gpus * (now - run.start_s)
        run.remaining_s = 0.0
        for observer in self.observers:
            observer.record_completion(run.gang, now - run.first_start_s)
        self._retire(run, JobStatus.COMPLETED, "", now)
        self._dirty = True

    def _evict(self, run: JobRun, now: float, preemptor: str) -> None:
        """The cycle already released the victim from the ledger."""
        if run.status is JobStatus.RUNNING:
            elapsed = now - run.start_s
            run.attained_gpu_s += run.gpus * elapsed
            if self.resume:
                worked = max(0.0, elapsed - self.config.restart_delay_s)
                run.remaining_s = max(0.0, run.remaining_s - worked / run.stretch)
            else:
                run.remaining_s = run.job.duration_s
        self.running.remove(run.gang.name)
        self.timeline.release(run.gang.tenant, run.gang.gpu_milli_total)
        run.version += 1
        run.preemptions += 1
        run.status = JobStatus.QUEUED
        run.reason = f"preempted by {preemptor}"
        self.pending[run.gang.name] = run.gang
        wait_reasons.enter_queue(run, now)
        self._dirty = True

    def _retire(self, run: JobRun, status: JobStatus, reason: str, now: float) -> None:
        wait_reasons.leave_queue(run, now)
        run.status = status
        run.reason = reason
        run.end_s = now
        self.timeline.in_system -= 1
        if self.progress and self.fill_demand is None:
            self.progress(1, len(self.runs))

    def _finish(self) -> None:
        if self.config.check_invariants:
            self.state.check_invariants()
        if self.fill_demand is not None:
            self.timeline.sample(self.timeline.last_s, len(self.running), len(self.pending))
        for run in self.runs:
            if run.status is JobStatus.QUEUED:
                wait_reasons.leave_queue(run, self.timeline.last_s)
                if not run.reason:
                    run.reason = "never tried: the queue policy stopped before it"

    # ------------------------------------------------------------------ helpers
    def _attained(self, now: float) -> dict[str, float]:
        """GPU-seconds of service so far: of waiting gangs that ran before, and of running
        gangs when a preemption policy may weigh them."""
        attained = {}
        for name in self.pending:
            run = self.by_name[name]
            if run.attained_gpu_s:
                attained[name] = run.attained_gpu_s
        if self.cycle.preemption is not None:
            for running in self.running.items:
                run = self.by_name[running.gang.name]
                # only a gang that runs receives service; a reserved one waits for its bind
                # (its start was NaN on a first reservation, which ranked it below every
                # queue: three reserved gangs then evicted each other in turn forever within
                # one instant; on a later one it was the start of its evicted run)
                running_s = now - run.start_s if run.status is JobStatus.RUNNING else 0.0
                attained[run.gang.name] = run.attained_gpu_s + run.gpus * running_s
        return attained

    def _book_placement(self, run: JobRun, placement: Placement) -> None:
        run.placement_cost = placement.cost.total
        per_node: dict[int, int] = {}
        for m in placement.members:
            per_node[m.node_index] = per_node.get(m.node_index, 0) + len(m.gpus)
        run.nodes = len(per_node)
        run.gpus_per_node = tuple(sorted(per_node.values(), reverse=True))
        run.comm_cost = comm_cost(placement, self.compiled)
        best = self.memo.best_comm_cost(run.gang) if run.comm_cost > 0 else 0.0
        run.cost_ratio = run.comm_cost / best if best > 0 else 1.0

    def _sample_step(self) -> float:
        if self.fill_demand is not None or not self.runs:
            return math.inf
        span = self.runs[-1].job.submit_time_s - self.runs[0].job.submit_time_s
        return max(MIN_SAMPLE_STEP_S, span / max(1, self.config.samples))

    def _sample_fill(self, now: float) -> None:
        """Fill protocol: one sample each time arrived demand passes a whole percent."""
        timeline = self.timeline
        reached = timeline.arrived_milli * PERCENT / timeline.capacity_milli
        while self._next_percent <= reached:
            timeline.sample(now, len(self.running), len(self.pending))
            self._next_percent += 1


def _next_tick(now: float, interval: float, ticked: bool) -> float:
    """The first multiple of ``interval`` at or after ``now``, past ``now`` if a tick just
    ran at it."""
    slot = math.ceil(now / interval) * interval
    if ticked and slot <= now:
        slot += interval
    return slot


def build_scorer(
    name: str, options: dict[str, object], seed: int, gangs: list[Gang]
) -> PlacementScorer:
    """A scorer by name; the run's seed and workload go to the parts that take them (the
    FGD scorers' tie-breaking, FGD's target workload), the user's options to all; built as
    the extender builds it (:func:`policies.scoring.inputs.build_scorer`)."""
    from phalanx.policies.scoring.inputs import build_scorer as build

    return build(name, options, seed, [m.request for g in gangs for m in g.members])


def _is_scorer(name: str) -> bool:
    from phalanx.policies.registry import UnknownPolicyError, get_queue_policy, get_scorer

    try:
        get_queue_policy(name)
    except UnknownPolicyError:
        try:
            get_scorer(name)
        except UnknownPolicyError:
            return False
        return True
    return False
