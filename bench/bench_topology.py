"""Building and compiling large clusters.

The default run builds small clusters once as a smoke test. The full size (10,000 nodes,
80,000 GPUs) runs with::

    python -m pytest bench/bench_topology.py -m benchmark_heavy --benchmark-enable

Building the objects alone is the baseline the compile step is measured against, and the
cluster-file path (two pools: DGX H100 and explicit L40S nodes) shows what validation adds.
"""

from __future__ import annotations

import pytest
from phalanx.topology.clusterfile import cluster_from_document
from phalanx.topology.compiled import CompiledCluster
from phalanx.topology.model import Cluster
from phalanx.topology.presets import SUPERPOD_H100_SU_NODES, cluster_preset

FULL_NODES = 10_000
SMOKE_NODES = 256


def mixed_cluster_document(nodes: int) -> dict:
    """Three quarters DGX H100, one quarter PCIe L40S, on explicit levels."""
    h100 = nodes * 3 // 4
    return {
        "name": f"mixed-{nodes}",
        "fabric": {
            "levels": [
                {"name": "su", "cost": 10},
                {"name": "spine", "cost": 11},
                {"name": "core", "cost": 22, "oversubscription": 2},
            ]
        },
        "node_pools": [
            {
                "name": "h100",
                "preset": "dgx-h100",
                "count": h100,
                "domains": {
                    "su": f"su{{index//{SUPERPOD_H100_SU_NODES}}}",
                    "spine": "training",
                    "core": "core",
                },
            },
            {
                "name": "l40s",
                "count": nodes - h100,
                "node": {
                    "gpus": 8,
                    "product": "NVIDIA-L40S",
                    "gpu_memory_mib": 46068,
                    "pcie": {"generation": 4, "gpus_per_switch": 2},
                    "numa_nodes": 2,
                    "nics": {"count": 2, "gbit_s": 200},
                    "cpu_milli": 128_000,
                    "memory_mib": 1_048_576,
                },
                "domains": {"su": "su{index//32}", "spine": "inference", "core": "core"},
            },
        ],
    }


def build_preset(nodes: int) -> Cluster:
    return cluster_preset(f"superpod-h100:{nodes}")


def build_and_compile_preset(nodes: int) -> CompiledCluster:
    return build_preset(nodes).compile()


def build_and_compile_file(nodes: int) -> CompiledCluster:
    return cluster_from_document(mixed_cluster_document(nodes)).compile()


def check_preset(compiled: CompiledCluster, nodes: int) -> None:
    assert compiled.n_nodes == nodes
    assert int(compiled.gpu_usable.sum()) == nodes * 8
    top = compiled.level_domain_range[-1][0]
    assert compiled.domain_free_gpus[top] == nodes * 8
    assert compiled.shape_pair_cost.shape[0] == 1


def check_file(compiled: CompiledCluster, nodes: int) -> None:
    assert compiled.n_nodes == nodes
    assert compiled.level_names == ["node", "su", "spine", "core"]
    assert compiled.products == ["NVIDIA-H100-80GB-HBM3", "NVIDIA-L40S"]
    assert compiled.shape_pair_cost.shape[0] == 2


def test_build_smoke(benchmark):
    cluster = benchmark(build_preset, SMOKE_NODES)
    assert len(cluster.nodes) == SMOKE_NODES


def test_build_and_compile_smoke(benchmark):
    check_preset(benchmark(build_and_compile_preset, SMOKE_NODES), SMOKE_NODES)


def test_cluster_file_smoke(benchmark):
    check_file(benchmark(build_and_compile_file, SMOKE_NODES), SMOKE_NODES)


@pytest.mark.benchmark_heavy
def test_build_10k_nodes_baseline(benchmark):
    cluster = benchmark.pedantic(build_preset, args=(FULL_NODES,), rounds=5, iterations=1)
    assert len(cluster.nodes) == FULL_NODES


@pytest.mark.benchmark_heavy
def test_build_and_compile_10k_nodes(benchmark):
    compiled = benchmark.pedantic(
        build_and_compile_preset, args=(FULL_NODES,), rounds=5, iterations=1
    )
    check_preset(compiled, FULL_NODES)


@pytest.mark.benchmark_heavy
def test_cluster_file_10k_nodes(benchmark):
    compiled = benchmark.pedantic(
        build_and_compile_file, args=(FULL_NODES,), rounds=5, iterations=1
    )
    check_file(compiled, FULL_NODES)
