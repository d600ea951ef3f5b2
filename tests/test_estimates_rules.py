"""The estimator's array form of the overrunning-gang rule (what backfill renews on every plan)
against the scalar one it replaces there: the same median, lo and hi to the last bit, so a
reservation's expected ends, and with them every backfill decision, stay as they were."""

from __future__ import annotations

import math
import random

import numpy as np
from phalanx.policies.estimates import RuntimeEstimator
from phalanx.scheduler.gang import Gang, MemberRequest


def _gang(queue: str, job_class: str) -> Gang:
    return Gang.uniform("g", 1, MemberRequest(gpus=1), queue=queue, job_class=job_class)


def _check(estimator: RuntimeEstimator, queue: str, job_class: str, elapsed: list[float]) -> None:
    median, found, lo, hi = estimator.remaining_rules(queue, job_class, np.array(elapsed))
    for i, e in enumerate(elapsed):
        want_median, want_lo, want_hi = estimator.remaining_rule(_gang(queue, job_class), e)
        assert bool(found[i]) == (want_median is not None)
        assert median[i] == (0.0 if want_median is None else want_median)
        assert lo[i] == want_lo
        assert hi[i] == want_hi


def test_rules_match_the_scalar_rule_on_random_histories() -> None:
    rng = random.Random(7)
    for _ in range(40):
        estimator = RuntimeEstimator(window=rng.choice([1, 4, 7, 101]))
        for _ in range(rng.randrange(0, 60)):
            job_class = rng.choice(["", "a", "b"])
            runtime = float(rng.choice([rng.randrange(1, 50) * 10.0, rng.uniform(1, 5000)]))
            estimator.record_completion(_gang("q", job_class), runtime)
        values = sorted({v for h in estimator._history.values() for v in h.ordered})
        elapsed = [rng.uniform(0, 6000) for _ in range(30)] + values + [0.0, 1e9]
        for job_class in ("", "a", "b", "c"):
            _check(estimator, "q", job_class, elapsed)
        _check(estimator, "other", "a", elapsed)


def test_no_history_runs_as_long_again_everywhere() -> None:
    median, found, lo, hi = RuntimeEstimator().remaining_rules("q", "", np.array([5.0, 7.0]))
    assert not found.any() and (median == 0.0).all()
    assert (lo == -math.inf).all() and (hi == math.inf).all()
