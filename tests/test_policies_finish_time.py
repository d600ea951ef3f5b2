"""Finish-time fairness (Themis) with preemption: a worse-off gang evicts better-off ones, whole,
by bands of rho, and the evicted gang resumes with its progress; no oracle estimates."""

from __future__ import annotations

import math

import pytest
from phalanx.policies.queue.finish_time import FinishTimeFairnessPolicy
from phalanx.policies.registry import get_queue_policy
from phalanx.simulator.clusters import resolve_cluster
from phalanx.simulator.config import SimulationConfig
from phalanx.simulator.job import Job, TraceWorkload
from phalanx.simulator.run import simulate

LONG_S, SHORT_S = 20_000.0, 100.0


def workload() -> TraceWorkload:
    """A long job holds all 8 GPUs; a short one arrives 10 s later and wants all 8."""
    return TraceWorkload(
        "two",
        [
            Job("long", 0.0, LONG_S, gpus=8, job_class="big"),
            Job("short", 10.0, SHORT_S, gpus=8, job_class="small"),
        ],
        "test",
    )


def ends(preemptive: bool) -> dict[str, tuple[float, int]]:
    config = SimulationConfig(
        policy="finish-time-fairness", policy_options={"preemptive": preemptive}
    )
    result = simulate(workload(), resolve_cluster("dgx-h100:1"), config)
    return {r.job.name: (r.end_s, r.preemptions) for r in result.runs}


def test_a_short_job_evicts_a_long_one_once_a_band_worse_off_and_both_finish() -> None:
    """Neither has history, so both are estimated at the default hour. The short one's rho
    grows by 1/3,600 per second of waiting and reaches the band above the long one's (1.25
    against 1.0) after 900 s: it evicts the long one at t=910, runs 100 s, and the long one
    resumes where it stopped."""
    out = ends(preemptive=True)
    assert out["short"][0] == pytest.approx(910.0 + SHORT_S)
    assert out["long"] == (pytest.approx(LONG_S + SHORT_S), 1)


def test_without_preemption_the_order_alone_cannot_help() -> None:
    out = ends(preemptive=False)
    assert out["short"][0] == pytest.approx(LONG_S + SHORT_S)
    assert out["long"] == (pytest.approx(LONG_S), 0)


def test_options_are_checked() -> None:
    policy = get_queue_policy("finish-time-fairness", preemptive=True, rho_band=0.5)
    assert isinstance(policy, FinishTimeFairnessPolicy)
    assert policy.default_preemption() is not None and policy.resume_after_preemption
    assert FinishTimeFairnessPolicy().default_preemption() is None
    for bad in ({"rho_band": 0.0}, {"rho_band": math.nan}, {"min_runtime_s": -1.0}):
        with pytest.raises(ValueError):
            FinishTimeFairnessPolicy(**bad)  # type: ignore[arg-type]
