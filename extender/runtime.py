"""Assembling a planner from settings, and the dry-run backend (a cluster from a file or a
preset, binds recorded instead of sent)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from phalanx.extender.binding import Binder, RecordingBinder
from phalanx.extender.config import PolicyConfig, ServeConfig
from phalanx.extender.planner import Planner, PlannerConfig
from phalanx.extender.status_reporter import GangReporter, RecordingSink
from phalanx.policies.registry import get_permit, get_preemption_policy, get_queue_policy
from phalanx.policies.scoring.inputs import build_scorer
from phalanx.scheduler.interfaces import (
    PermitPlugin,
    PlacementScorer,
    PreemptionPolicy,
    QueuePolicy,
)
from phalanx.topology.model import Cluster

RECENT_BINDS_SHOWN = 100
"""Dry-run binds listed in /debug/state (the newest)."""


def build_policies(
    cfg: PolicyConfig,
) -> tuple[QueuePolicy, PlacementScorer | None, PreemptionPolicy | None]:
    """The named policies from the registry; unknown names raise ``UnknownPolicyError``. The
    scorer is built as the simulator builds it (seed, and the default workload: the extender
    has no trace to learn one from)."""
    queue = get_queue_policy(cfg.queue, **cfg.queue_options)
    scorer = build_scorer(cfg.scorer, cfg.scorer_options, cfg.seed) if cfg.scorer else None
    preemption = (
        get_preemption_policy(cfg.preemption, **cfg.preemption_options) if cfg.preemption else None
    )
    return queue, scorer, preemption


def build_permit(cfg: PolicyConfig) -> PermitPlugin | None:
    """The configured Permit plugin (``link-hold``), None when none is: one object for every
    planner the factory makes, so the run times it learns outlive a topology rebuild."""
    return get_permit(cfg.permit, **cfg.permit_options) if cfg.permit else None


def planner_factory(
    config: ServeConfig, clock: Callable[[], float] = time.time
) -> Callable[[Cluster], Planner]:
    """Builds the policies once (so a bad name fails at start) and returns a factory."""
    queue, scorer, preemption = build_policies(config.policies)
    permit = build_permit(config.policies)
    planner_config = PlannerConfig(
        reservation_ttl_s=config.reservation_ttl_s,
        solver=config.solver,
        time_limit_s=config.solver_time_limit_s,
        percentage_of_nodes_to_score=config.percentage_of_nodes_to_score,
        eviction_grace_period_s=config.eviction_grace_period_s,
    )

    def make(cluster: Cluster) -> Planner:
        return Planner(
            cluster,
            queue,
            scorer=scorer,
            preemption=preemption,
            permit=permit,
            config=planner_config,
            clock=clock,
        )

    return make


class DryRunBackend:
    """The webhook against a described cluster: pods are known from the requests themselves
    and binds, PodGroup status patches and Events are recorded (and listed in /debug/state)
    instead of sent."""

    def __init__(self, planner: Planner) -> None:
        self._planner = planner
        self.recorder = RecordingBinder()
        self.reports = RecordingSink()
        self.reporter = GangReporter(self.reports)
        self.reporter.attach(planner)

    @property
    def planner(self) -> Planner:
        return self._planner

    @property
    def binder(self) -> Binder:
        return self.recorder

    def ready(self) -> tuple[bool, str]:
        return True, "dry-run"

    def debug_extra(self) -> dict[str, Any]:
        return {
            "mode": "dry-run",
            "binds_recorded": self.recorder.count,
            "recent_binds": list(self.recorder.records)[-RECENT_BINDS_SHOWN:],
            **self.reports.summary(RECENT_BINDS_SHOWN),
        }
