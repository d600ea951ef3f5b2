"""The fgd-cpu scorer (FGD plus CPU stranding) on hand-computed cases: where FGD ties, it keeps
a CPU-heavy pod off the node whose free GPUs its CPU could then no longer feed."""

from __future__ import annotations

import numpy as np
import pytest
from phalanx.policies.registry import get_scorer
from phalanx.policies.scoring.fgd import FgdScorer
from phalanx.policies.scoring.fgd_cpu import (
    FgdCpuScorer,
    cpu_milli_per_gpu_milli,
    stranded_milli,
)
from phalanx.policies.scoring.fgd_workload import TaskType, Workload
from phalanx.scheduler.gang import MemberRequest
from phalanx.topology.compiled import CompiledCluster
from phalanx.topology.model import Cluster, FabricLevel, Gpu, Node

ONE_GPU_2_CORES = TaskType(cpu_milli=2000, gpus=1, gpu_milli=1000)
WORKLOAD = Workload((ONE_GPU_2_CORES,), (1.0,))
"""rho = 2000 cpu milli per 1000 milli-GPU = 2."""


def cluster(cpu_milli: list[int], gpus: int = 4) -> CompiledCluster:
    nodes = [
        Node(
            f"n{i}",
            tuple(Gpu(g, f"n{i}-{g}", "A", 16_000) for g in range(gpus)),
            cpu,
            256_000,
            domains={"rack": "r"},
        )
        for i, cpu in enumerate(cpu_milli)
    ]
    return Cluster("test", nodes, [FabricLevel("rack", 10.0)]).compile()


def test_cpu_per_gpu_milli_is_popularity_weighted_over_gpu_tasks() -> None:
    share = TaskType(cpu_milli=1000, gpus=1, gpu_milli=500)
    cpu_only = TaskType(cpu_milli=50_000)
    mix = Workload((ONE_GPU_2_CORES, share, cpu_only), (0.25, 0.25, 0.5))
    # (0.25 * 2000 + 0.25 * 1000) / (0.25 * 1000 + 0.25 * 500) = 2
    assert cpu_milli_per_gpu_milli(mix) == pytest.approx(2.0)
    assert cpu_milli_per_gpu_milli(Workload((cpu_only,), (1.0,))) == 0.0


def test_stranded_milli_by_hand() -> None:
    # 3000 free milli-GPU, 4000 cpu milli feed 2000 of them at rho 2: 1000 stranded
    assert stranded_milli(np.array([3000, 3000]), np.array([4000, 8000]), 2.0).tolist() == [
        1000.0,
        0.0,
    ]


def test_keeps_a_cpu_heavy_pod_off_the_node_it_would_strand() -> None:
    # Node 0: 4 GPUs, 10 cores. Node 1: 4 GPUs, 32 cores. The pod: 1 GPU, 6 cores.
    c = cluster([10_000, 32_000])
    nodes = np.arange(2)
    pod = MemberRequest(gpus=1, cpu_milli=6000)
    # FGD: the 1-GPU task still fits both nodes afterwards (4 and 26 cores left, 3 free
    # GPUs), so fragmentation is 0 before and after on both: 50 points each, a tie.
    fgd = FgdScorer(WORKLOAD, artifact_scores=True, seed=0)
    assert np.floor(fgd.score(c, pod, nodes)).tolist() == [50, 50]
    # fgd-cpu: node 0 goes from 4000 - 10000 / 2 < 0 to 3000 - 4000 / 2 = 1000 stranded;
    # node 1 stays at 0. Delta -1000 -> int(100 * sigmoid(-1)) = 26 points against 50.
    scorer = FgdCpuScorer(WORKLOAD, seed=0)
    assert scorer.cpu_per_gpu_milli == pytest.approx(2.0)
    assert scorer.delta_milli(c, pod, nodes).tolist() == [-1000.0, 0.0]
    scores = scorer.score(c, pod, nodes)
    assert np.floor(scores).tolist() == [26, 50]
    assert int(np.argmax(scores)) == 1


def test_is_fgd_for_cpu_only_pods_and_without_weight() -> None:
    c = cluster([10_000, 32_000, 12_000])
    c.allocate(2, [0], 400)
    nodes = np.arange(3)
    for seed in (0, 7):
        fgd = FgdScorer(WORKLOAD, seed=seed)
        plain = FgdCpuScorer(WORKLOAD, seed=seed, stranding_weight=0.0)
        cpu_heavy = FgdCpuScorer(WORKLOAD, seed=seed)
        for pod in (MemberRequest(gpus=1, cpu_milli=6000), MemberRequest(gpu_milli=300)):
            assert plain.score(c, pod, nodes).tolist() == fgd.score(c, pod, nodes).tolist()
            assert plain.pick_gpu(c, pod, 2) == fgd.pick_gpu(c, pod, 2)
        cpu_pod = MemberRequest(cpu_milli=8000)
        assert cpu_heavy.score(c, cpu_pod, nodes).tolist() == fgd.score(c, cpu_pod, nodes).tolist()


def test_reached_by_name_with_the_run_inputs() -> None:
    scorer = get_scorer("fgd-cpu", workload=WORKLOAD, seed=3, stranding_weight=2.0)
    assert isinstance(scorer, FgdCpuScorer)
    assert scorer.stranding_weight == 2.0
    with pytest.raises(ValueError, match="stranding_weight"):
        FgdCpuScorer(WORKLOAD, stranding_weight=-1.0)


def test_without_cpu_figures_the_cluster_ratio_is_used() -> None:
    # The built-in default workload has no cpu requests: rho falls back to the GPU nodes'
    # cpu per milli-GPU, here (10 + 30 cores) / 8 GPUs = 5 cpu milli per milli-GPU.
    c = cluster([10_000, 30_000])
    scorer = FgdCpuScorer(seed=0)
    assert scorer.cpu_per_gpu_milli == 0.0
    pod = MemberRequest(gpus=1, cpu_milli=6000)
    # node 0: stranded 4000 - 10000 / 5 = 2000 before, 3000 - 4000 / 5 = 2200 after: +200;
    # node 1: none before or after (30 and 24 cores feed more than its free GPUs)
    scorer.score(c, pod, np.arange(2))
    assert scorer.cpu_per_gpu_milli == pytest.approx(5.0)
    fgd = FgdScorer(seed=0, artifact_scores=False).score(c, pod, np.arange(2)) * 1000
    assert (fgd - scorer.delta_milli(c, pod, np.arange(2))).tolist() == pytest.approx([200, 0])
    assert FgdCpuScorer(WORKLOAD, cpu_per_gpu_milli=4.0).cpu_per_gpu_milli == 4.0
    with pytest.raises(ValueError, match="cpu_per_gpu_milli"):
        FgdCpuScorer(WORKLOAD, cpu_per_gpu_milli=0.0)
