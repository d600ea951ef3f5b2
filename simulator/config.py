"""Everything that configures one simulation run, as plain values (picklable for sweeps)."""

from __future__ import annotations

from dataclasses import dataclass, field

from phalanx.simulator.slowdown import SlowdownModel

DEFAULT_SAMPLES = 500
"""Time-series points over the trace's arrival span (replay)."""
BIND_DELAY_DISTRIBUTIONS = ("fixed", "exponential")
"""``fixed``: every gang binds ``bind_delay_s`` after its reservation. ``exponential``: each
pod takes an exponential time of mean ``bind_delay_s`` to arrive and bind (controller creating
pods, image pulls, scheduler back-off), and the gang binds when its slowest pod has; a gang
whose slowest pod is later than the TTL loses its reservation and is queued again."""


@dataclass(frozen=True)
class SimulationConfig:
    policy: str = "fifo"
    """Queue policy (``policies.registry``); under the fill protocol a scorer name here is
    taken as the scorer, since one pod at a time leaves nothing to order."""
    policy_options: dict[str, object] = field(default_factory=dict)
    scorer: str | None = None
    scorer_options: dict[str, object] = field(default_factory=dict)
    preemption: str | None = None
    preemption_options: dict[str, object] = field(default_factory=dict)
    permit: str | None = None
    """Permit plugin (``link-hold``): may hold a gang that fits (``policies.permit``)."""
    permit_options: dict[str, object] = field(default_factory=dict)
    solver: str = "fast"
    seed: int = 0
    scheduling_interval_s: float | None = None
    """None: a cycle after every batch of same-time events; else only every interval."""
    reserve_ttl_s: float | None = None
    """Started gangs are reserved for this long and bind ``bind_delay_s`` later."""
    bind_delay_s: float = 0.0
    bind_delay_distribution: str = "fixed"
    """One of :data:`BIND_DELAY_DISTRIBUTIONS`."""
    slowdown: SlowdownModel = field(default_factory=SlowdownModel)
    oracle_estimates: bool = False
    resume_after_preemption: bool | None = None
    """True: an evicted job keeps its progress (checkpointed); False: it starts over, as the
    preemption policies assume when they count lost work. None: the queue policy's own
    assumption (``tiresias``/``las`` resume, every other policy starts over)."""
    restart_delay_s: float = 0.0
    """Seconds each start (the first and every one after a preemption) spends before the job
    makes progress: container start, loading a checkpoint. Pollux's simulator charges 30 s
    (``Job.reallocate``); 0 by default, so trace durations replay exactly."""
    drop_unplaced: bool = False
    """Fill protocol: a gang that does not start on arrival is dropped, not retried."""
    check_invariants: bool = False
    """Check the ledger after every cycle (tests; slow)."""
    samples: int = DEFAULT_SAMPLES

    def check(self) -> None:
        if not self.restart_delay_s >= 0:
            raise ValueError("restart delay must not be negative")
        if self.scheduling_interval_s is not None and not self.scheduling_interval_s > 0:
            raise ValueError("scheduling interval must be positive")
        if self.bind_delay_distribution not in BIND_DELAY_DISTRIBUTIONS:
            raise ValueError(
                f"unknown bind delay distribution {self.bind_delay_distribution!r}; "
                f"choose one of {', '.join(BIND_DELAY_DISTRIBUTIONS)}"
            )
        if self.reserve_ttl_s is not None:
            if not self.reserve_ttl_s > 0:
                raise ValueError("reservation TTL must be positive")
            if self.bind_delay_distribution == "fixed" and not (
                0 <= self.bind_delay_s < self.reserve_ttl_s
            ):
                raise ValueError("bind delay must be >= 0 and shorter than the reservation TTL")
            if self.bind_delay_distribution == "exponential" and not self.bind_delay_s > 0:
                raise ValueError("an exponential bind delay needs a positive mean bind delay")
        elif self.bind_delay_s:
            raise ValueError("a bind delay needs a reservation TTL (reserve_ttl_s)")
