"""How much longer a job runs on a placement with worse links than the best one.

The model and its calibration are the scheduler's (:mod:`scheduler.link_stretch`); this module
decides which jobs it applies to and with what communication intensity (their own, else their
class's family), and is off unless asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from phalanx.scheduler.link_stretch import (
    COMM_FRACTION_FULL_INTENSITY,
    FAMILY_INTENSITY,
    GAVEL_CONSOLIDATION_SPEEDUP,
    link_stretch,
)
from phalanx.simulator.job import Job

__all__ = [
    "CLASS_FAMILY",
    "COMM_FRACTION_FULL_INTENSITY",
    "DEFAULT_INTENSITY",
    "FAMILY_INTENSITY",
    "GAVEL_CONSOLIDATION_SPEEDUP",
    "SlowdownModel",
]

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
        return link_stretch(intensity, cost_ratio) if self.enabled else 1.0
