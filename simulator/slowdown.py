"""How much longer a job runs on a placement with worse links than the best one.

A data-parallel step is compute plus communication; communication time scales with the
bottleneck link cost (:func:`scheduler.cost.communication_cost`). With ``f`` the share of the
step spent communicating on the best placement, a placement whose bottleneck costs ``r`` times
the best one's takes ``(1 - f) + f * r`` as long::

    stretch = 1 + f * (r - 1),    f = COMM_FRACTION_FULL_INTENSITY * intensity

Calibration (``shared/research/topology.md`` section 5): Gavel's measured V100 throughput with
a 2-GPU job consolidated on one server vs spread over two is 4.34x for LM, 2.27x for
Transformer, 2.35x for ResNet-18 and 1.15x for ResNet-50. The V100 link ratio is 12x (NVLink2
150 GB/s per direction vs one 100G EDR NIC, ``published-results.md`` section 13.4), so
``f = (ratio - 1) / (12 - 1)``: LM 0.304, ResNet-18 0.123, Transformer 0.115, ResNet-50 0.014.
LM, the most sensitive, defines intensity 1; the others are their share of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from phalanx.simulator.job import Job

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
CLASS_FAMILY = {
    "lm": "lm",
    "lstm": "lm",
    "llm": "lm",
    "gpt": "lm",
    "deepspeech2": "lm",
    "transformer": "transformer",
    "bert": "transformer",
    "resnet-18": "resnet-18",
    "cifar10": "resnet-18",
    "resnet-50": "resnet-50",
    "imagenet": "resnet-50",
}
"""Job classes of the bundled traces mapped to the measured family they resemble most: the
Pollux/Sia apps by their models (cifar10 = ResNet-18, imagenet = ResNet-50, bert = Transformer;
DeepSpeech2 is recurrent like LM)."""
DEFAULT_INTENSITY = 0.5
"""For classes no measurement covers (or traces without classes): midway on the scale."""


@dataclass(frozen=True)
class SlowdownModel:
    """Off by default: the trace's durations are then replayed exactly."""

    enabled: bool = False
    default_intensity: float = DEFAULT_INTENSITY
    class_family: dict[str, str] = field(default_factory=lambda: dict(CLASS_FAMILY))

    def intensity(self, job: Job) -> float:
        """The job's communication intensity (0..1): its own, else its class's."""
        if job.comm_intensity is not None:
            return job.comm_intensity
        key = job.job_class.strip().lower()
        for prefix in sorted(self.class_family, key=len, reverse=True):
            if key.startswith(prefix):
                return FAMILY_INTENSITY[self.class_family[prefix]]
        return self.default_intensity

    def stretch(self, intensity: float, cost_ratio: float) -> float:
        """Run-time multiplier on a placement whose bottleneck link costs ``cost_ratio``
        times the best placement's (>= 1)."""
        if not self.enabled or not math.isfinite(cost_ratio) or cost_ratio <= 1.0:
            return 1.0
        return 1.0 + COMM_FRACTION_FULL_INTENSITY * intensity * (cost_ratio - 1.0)
