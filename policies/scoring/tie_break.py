"""Random tie-breaking among equal integer scores, as kube-scheduler's ``selectHost`` does.

The FGD artifact's plugins return integer scores (0..100) and kube-scheduler picks uniformly
among the nodes sharing the top score. Adding a seeded jitter below one score step to integer
scores gives the same choice through a plain argmax, reproducibly.
"""

from __future__ import annotations

import numpy as np

TIE_JITTER = 0.5
"""Below the step between integer scores, so jitter only ever reorders equal scores."""


class TieBreaker:
    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def integer_scores(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores, dtype=np.float64) + self.rng.random(len(scores)) * TIE_JITTER

    def choice(self, options: np.ndarray) -> int | None:
        """One of ``options`` uniformly, or None if there are none."""
        return int(self.rng.choice(options)) if len(options) else None
