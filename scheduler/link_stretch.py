"""How much longer a data-parallel job runs on links slower than its best placement's.

A step is compute plus communication; communication time scales with the bottleneck link cost
(:func:`scheduler.cost.bottleneck_comm_cost`). With ``f`` the share of the step spent
communicating on the best placement, a placement whose bottleneck costs ``r`` times the best
one's takes ``(1 - f) + f * r`` as long::

    stretch = 1 + f * (r - 1),    f = COMM_FRACTION_FULL_INTENSITY * intensity

Calibration (``shared/research/topology.md`` section 5): Gavel's measured V100 throughput with
a 2-GPU job consolidated on one server vs spread over two is 4.34x for LM, 2.27x for
Transformer, 2.35x for ResNet-18 and 1.15x for ResNet-50. The V100 link ratio is 12x (NVLink2
150 GB/s per direction vs one 100G EDR NIC, ``published-results.md`` section 13.4), so
``f = (ratio - 1) / (12 - 1)``: LM 0.304, ResNet-18 0.123, Transformer 0.115, ResNet-50 0.014.
LM, the most sensitive, defines intensity 1; the others are their share of it.

The simulator stretches run times with it (:mod:`simulator.slowdown`); the link hold
(:mod:`policies.permit.link_hold`) prices a slower placement with it, so the scheduler's belief
and the simulated world agree on the model, not on any job's run time.
"""

from __future__ import annotations

import math

GAVEL_V100_LINK_RATIO = 12.0
GAVEL_CONSOLIDATION_SPEEDUP = {
    "lm": 4.34,
    "transformer": 2.27,
    "resnet-18": 2.35,
    "resnet-50": 1.15,
}
"""Consolidated / spread throughput, 2 GPUs on V100 (Gavel ``simulation_throughputs.json``)."""


def _comm_fraction(speedup: float) -> float:
    return (speedup - 1.0) / (GAVEL_V100_LINK_RATIO - 1.0)


COMM_FRACTION_FULL_INTENSITY = _comm_fraction(GAVEL_CONSOLIDATION_SPEEDUP["lm"])
FAMILY_INTENSITY = {
    family: _comm_fraction(speedup) / COMM_FRACTION_FULL_INTENSITY
    for family, speedup in GAVEL_CONSOLIDATION_SPEEDUP.items()
}


def link_stretch(intensity: float, cost_ratio: float) -> float:
    """Run-time multiplier of a job of communication ``intensity`` (0..1) on a placement
    whose bottleneck link costs ``cost_ratio`` times the best placement's (1 when not worse)."""
    if not math.isfinite(cost_ratio) or cost_ratio <= 1.0:
        return 1.0
    return 1.0 + COMM_FRACTION_FULL_INTENSITY * intensity * (cost_ratio - 1.0)
