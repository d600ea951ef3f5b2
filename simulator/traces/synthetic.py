"""A seeded synthetic workload: Poisson arrivals, gang-size and log-normal run-time
distributions, weighted tenants and job classes.

Spec text (``--trace synthetic:SPEC``) is ``key=value`` pairs joined by commas; distributions
are ``value:weight`` entries joined by ``/``::

    jobs=500,rate_per_h=60,gpus=1:60/2:10/4:10/8:15/16:5,duration_median_s=1800,
    duration_sigma=1.5,tenants=a:2/b:1,classes=LM:1/ResNet-50:1,seed=7

``time_limit_max_factor=F`` (F >= 1) makes every job state a time limit, as a Slurm user's
``--time`` or the ``phalanx.io/runtime-estimate-seconds`` annotation would, read by the
policies as the job's own run-time estimate: its run time times a factor drawn log-uniformly
between 1 and F, rounded up to the next of the round values users pick
(:data:`TIME_LIMIT_STEPS_S`). Users overestimate, and by whole hours: Tsafrir, Etsion and
Feitelson (2005) find a few round values covering most requests and most jobs using a
fraction of what they asked for. The limit is drawn after everything else, so a spec without
it yields the same jobs with or without the key.

A path to a JSON or YAML file holding the same keys works too.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import yaml
from phalanx.simulator.job import Job, TraceError, TraceWorkload

SECONDS_PER_HOUR = 3600.0
DEFAULT_GPU_WEIGHTS = {1: 0.6, 2: 0.1, 4: 0.1, 8: 0.15, 16: 0.05}
"""Roughly Philly's mix with more large gangs, so that placement matters."""
DEFAULT_DURATION_MEDIAN_S = 1800.0
DEFAULT_DURATION_SIGMA = 1.5
"""Log-normal spread; Philly's run times span four orders of magnitude."""
MIN_DURATION_S = 1.0
TIME_LIMIT_STEPS_S = tuple(
    60.0 * m for m in (15, 30, 60, 120, 240, 480, 720, 1440, 2880, 4320, 10080)
)
"""The round time limits users pick (15 min to one week); a longer limit is whole weeks."""


@dataclass(frozen=True)
class SyntheticSpec:
    jobs: int = 200
    rate_per_h: float = 60.0
    gpus: dict[int, float] = field(default_factory=lambda: dict(DEFAULT_GPU_WEIGHTS))
    duration_median_s: float = DEFAULT_DURATION_MEDIAN_S
    duration_sigma: float = DEFAULT_DURATION_SIGMA
    tenants: dict[str, float] = field(default_factory=lambda: {"default": 1.0})
    classes: dict[str, float] = field(default_factory=lambda: {"": 1.0})
    seed: int | None = None
    time_limit_max_factor: float = 0.0
    """0: jobs state no time limit; else F >= 1 (see the module's docstring)."""

    def check(self, where: str) -> None:
        problems = []
        if self.jobs < 1:
            problems.append("jobs must be at least 1")
        if not self.rate_per_h > 0:
            problems.append("rate_per_h must be positive")
        if not self.duration_median_s > 0 or self.duration_sigma < 0:
            problems.append("duration_median_s must be positive and duration_sigma >= 0")
        for name in ("gpus", "tenants", "classes"):
            weights = getattr(self, name)
            if not weights or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
                problems.append(f"{name} needs non-negative weights with a positive sum")
        factor = self.time_limit_max_factor
        if factor and not (factor >= 1 and math.isfinite(factor)):
            problems.append("time_limit_max_factor must be 0 (no limits) or a number >= 1")
        if any(g < 1 for g in self.gpus):
            problems.append("gpus values must be at least 1")
        if problems:
            raise TraceError(where, "; ".join(problems))


def parse_spec(text: str) -> SyntheticSpec:
    """Spec text or a JSON/YAML file path -> :class:`SyntheticSpec`."""
    path = Path(text)
    if text and path.suffix in (".json", ".yaml", ".yml"):
        if not path.is_file():
            raise TraceError(text, "no such file")
        raw = (
            json.loads(path.read_text())
            if path.suffix == ".json"
            else yaml.safe_load(path.read_text())
        )
        if not isinstance(raw, dict):
            raise TraceError(text, "expected a mapping of synthetic workload settings")
        pairs = {str(k): v for k, v in raw.items()}
    else:
        pairs = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            if not sep:
                raise TraceError("synthetic", f"{part!r} is not key=value")
            pairs[key.strip()] = value.strip()
    known = {f.name: f for f in fields(SyntheticSpec)}
    unknown = sorted(set(pairs) - set(known))
    if unknown:
        raise TraceError("synthetic", f"unknown setting(s) {unknown}; known: {sorted(known)}")
    values: dict[str, object] = {}
    for key, raw_value in pairs.items():
        values[key] = _convert(key, raw_value)
    spec = SyntheticSpec(**values)  # type: ignore[arg-type]
    spec.check("synthetic")
    return spec


def _convert(key: str, value: object) -> object:
    try:
        if key in ("gpus", "tenants", "classes"):
            weights = value if isinstance(value, dict) else _weights(str(value))
            if key == "gpus":
                return {int(k): float(w) for k, w in weights.items()}
            return {str(k): float(w) for k, w in weights.items()}
        if key in ("jobs", "seed"):
            return int(value)  # type: ignore[arg-type]
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TraceError("synthetic", f"setting {key!r}: cannot read {value!r}") from None


def _weights(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for entry in filter(None, text.split("/")):
        value, sep, weight = entry.partition(":")
        out[value] = float(weight) if sep else 1.0
    return out


def generate(spec: SyntheticSpec, seed: int = 0) -> TraceWorkload:
    """Draw the workload; the spec's own seed wins over ``seed``."""
    rng = np.random.default_rng(spec.seed if spec.seed is not None else seed)
    gaps_s = rng.exponential(SECONDS_PER_HOUR / spec.rate_per_h, size=spec.jobs)
    submits = np.cumsum(gaps_s) - gaps_s[0]
    durations = np.maximum(
        MIN_DURATION_S,
        spec.duration_median_s * np.exp(rng.normal(0.0, spec.duration_sigma, size=spec.jobs)),
    )
    gpus = _draw(rng, spec.gpus, spec.jobs)
    tenants = _draw(rng, spec.tenants, spec.jobs)
    classes = _draw(rng, spec.classes, spec.jobs)
    limits_s = (
        time_limits_s(rng, durations, spec.time_limit_max_factor)
        if spec.time_limit_max_factor
        else None
    )
    width = len(str(spec.jobs))
    jobs = [
        Job(
            name=f"syn-{i:0{width}d}",
            submit_time_s=round(float(submits[i]), 3),
            duration_s=round(float(durations[i]), 3),
            gpus=int(gpus[i]),
            tenant=str(tenants[i]),
            job_class=str(classes[i]),
            runtime_estimate_s=None if limits_s is None else float(limits_s[i]),
            source=f"synthetic job {i}",
        )
        for i in range(spec.jobs)
    ]
    return TraceWorkload(
        name="synthetic",
        jobs=jobs,
        source="synthetic",
        notes=[f"synthetic: {spec}"],
    )


def time_limits_s(
    rng: np.random.Generator, durations_s: np.ndarray, max_factor: float
) -> np.ndarray:
    """Each run time times a log-uniform factor in [1, ``max_factor``], rounded up to the next
    of :data:`TIME_LIMIT_STEPS_S` (past the last, to whole multiples of it)."""
    factors = np.exp(rng.uniform(0.0, np.log(max_factor), size=durations_s.size))
    wanted_s = durations_s * factors
    steps_s = np.asarray(TIME_LIMIT_STEPS_S)
    at = np.searchsorted(steps_s, wanted_s, side="left")
    longest_s = steps_s[-1]
    beyond_s = np.ceil(wanted_s / longest_s) * longest_s
    return np.where(at < steps_s.size, steps_s[np.minimum(at, steps_s.size - 1)], beyond_s)


def _draw(rng: np.random.Generator, weights: dict, size: int) -> np.ndarray:
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=np.float64)
    picks = rng.choice(len(keys), size=size, p=p / p.sum())
    return np.array(keys, dtype=object)[picks]


def load_synthetic(text: str, *, seed: int = 0) -> TraceWorkload:
    return generate(parse_spec(text), seed=seed)
