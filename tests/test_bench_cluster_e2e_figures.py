"""The gang figures of ``bench.cluster_e2e``: GPU-seconds of partly bound gangs split into the
bind window of gangs that completed and the hold of gangs that never did."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from phalanx.bench.cluster_e2e import BindLog, _gang_figures


@dataclass
class Spec:
    name: str
    members: int
    gpus: int = 8

    def pod_names(self) -> list[str]:
        return [f"{self.name}-{i}" for i in range(self.members)]


def test_a_complete_gang_counts_its_bind_window_an_incomplete_one_its_hold_to_the_end():
    log = BindLog()
    log.created_s = {"a-0": 0.0, "a-1": 1.0, "b-0": 0.0, "b-1": 0.0}
    log.bound_s = {"a-0": 2.0, "a-1": 2.5, "b-0": 3.0}
    figs = _gang_figures(log, [Spec("a", 2), Spec("b", 2)], end_s=10.0)
    assert figs.complete == 1
    assert figs.start_s == [1.5] and figs.spread_s == [0.5]
    assert figs.incomplete_gpu_s == pytest.approx(7.0 * 8)  # b-0 from 3 s to the end
    assert figs.bind_window_gpu_s == pytest.approx(0.5 * 8)  # a-0 until a-1 bound
    assert figs.partial_gpu_s == pytest.approx(60.0)
    both = figs + figs
    assert both.gangs == 4 and both.incomplete_gpu_s == pytest.approx(112.0)
