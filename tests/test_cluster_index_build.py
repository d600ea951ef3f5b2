"""The cluster index, built from whole arrays, equals the per-node Python build it replaced.

The first placement on a new cluster (every topology refresh in the extender) builds the index;
its per-node loops made that 155-195 ms on 10,000 nodes. The references below are those loops,
kept to check the array versions bit for bit on presets, cluster files and GPUs that are
unhealthy or in MIG mode.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from phalanx.scheduler import cluster_index as ci
from phalanx.scheduler.cost import ideal_leftover_table
from phalanx.topology.clusterfile import load_cluster_file
from phalanx.topology.compiled import CompiledCluster
from phalanx.topology.model import Cluster
from phalanx.topology.presets import NODE_PRESETS, cluster_preset

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "clusters"


def reference_children(compiled: CompiledCluster) -> tuple[np.ndarray, np.ndarray]:
    n_domains = len(compiled.domain_names)
    parents, kids = [], []
    for level in range(1, compiled.n_levels):
        pairs = np.unique(
            np.stack([compiled.node_domain[level], compiled.node_domain[level - 1]], axis=1),
            axis=0,
        )
        parents.append(pairs[:, 0])
        kids.append(pairs[:, 1])
    parent = np.concatenate(parents) if parents else np.zeros(0, dtype=np.int64)
    child = np.concatenate(kids) if kids else np.zeros(0, dtype=np.int64)
    start = np.searchsorted(parent, np.arange(n_domains + 1)).astype(np.int64)
    return start, child.astype(np.int64)


def reference_nvlink(compiled: CompiledCluster) -> tuple[np.ndarray, np.ndarray, int]:
    per_node: list[list[int]] = []
    for i, node in enumerate(compiled.cluster.nodes):
        groups: dict[int, int] = {}
        for g, gpu in enumerate(node.gpus):
            if gpu.nvlink_group >= 0 and compiled.gpu_usable[i, g]:
                groups[gpu.nvlink_group] = groups.get(gpu.nvlink_group, 0) | 1 << g
        per_node.append(sorted(groups.values()))
    width = max(1, max(len(m) for m in per_node))
    masks = np.zeros((compiled.n_nodes, width), dtype=np.uint64)
    largest = 0
    for i, node_masks in enumerate(per_node):
        for s, mask in enumerate(node_masks):
            masks[i, s] = np.uint64(mask)
            largest = max(largest, mask.bit_count())
    return masks, np.array([bool(m) for m in per_node]), largest


def reference_shapes(compiled: CompiledCluster) -> tuple[np.ndarray, list[ci.ChoiceShape]]:
    ideal = ideal_leftover_table(compiled)
    keys: dict[tuple, int] = {}
    shapes: list[ci.ChoiceShape] = []
    shape_of = np.full(compiled.n_nodes, ci.CPU_ONLY, dtype=np.int32)
    for i in range(compiled.n_nodes):
        count = int(compiled.gpu_count[i])
        if count == 0:
            continue
        numa = compiled.gpu_numa[i, :count]
        rail = compiled.gpu_rail[i, :count]
        key = (int(compiled.node_shape[i]), numa.tobytes(), rail.tobytes())
        if key not in keys:
            pair = compiled.pair_cost_matrix(i)[:count, :count]
            finite = pair[np.isfinite(pair)]
            keys[key] = len(shapes)
            shapes.append(
                ci.ChoiceShape(
                    pair_cost=pair,
                    numa=numa.copy(),
                    rail=rail.copy(),
                    ideal_leftover=ideal[compiled.node_shape[i], : count + 1].copy(),
                    worst_link=float(finite.max()) if finite.size else 0.0,
                    socket_gpus=int(np.bincount(numa - numa.min()).max()),
                )
            )
        shape_of[i] = keys[key]
    return shape_of, shapes


def with_broken_gpus(cluster: Cluster) -> Cluster:
    """Every third node loses a GPU to a fault, every fifth has one in MIG mode."""
    nodes = []
    for i, node in enumerate(cluster.nodes):
        gpus = list(node.gpus)
        if gpus and i % 3 == 0:
            gpus[i % len(gpus)] = dataclasses.replace(gpus[i % len(gpus)], healthy=False)
        if gpus and i % 5 == 0:
            gpus[-1] = dataclasses.replace(gpus[-1], mig_enabled=True)
        nodes.append(dataclasses.replace(node, gpus=tuple(gpus)))
    return dataclasses.replace(cluster, nodes=tuple(nodes))


CLUSTERS = [
    *(f"{name}:24" for name in sorted(NODE_PRESETS)),
    *(f"file:{p.name}" for p in sorted(EXAMPLES.glob("*")) if p.suffix in (".yaml", ".json")),
]


def build(spec: str) -> Cluster:
    if spec.startswith("file:"):
        return load_cluster_file(EXAMPLES / spec.removeprefix("file:"))
    return cluster_preset(spec)


@pytest.mark.parametrize("broken", [False, True], ids=["healthy", "faults"])
@pytest.mark.parametrize("spec", CLUSTERS)
def test_index_arrays_equal_the_per_node_build(spec: str, broken: bool):
    cluster = build(spec)
    if broken:
        cluster = with_broken_gpus(cluster)
    compiled = cluster.compile()
    for got, want in zip(ci._children(compiled), reference_children(compiled), strict=True):
        assert np.array_equal(got, want)
    masks, present, largest = ci._node_nvlink_domains(compiled)
    ref_masks, ref_present, ref_largest = reference_nvlink(compiled)
    assert masks.dtype == ref_masks.dtype and np.array_equal(masks, ref_masks)
    assert np.array_equal(present, ref_present) and largest == ref_largest
    shape_of, shapes = ci._choice_shapes(compiled)
    ref_shape_of, ref_shapes = reference_shapes(compiled)
    assert np.array_equal(shape_of, ref_shape_of)
    assert len(shapes) == len(ref_shapes)
    for got, want in zip(shapes, ref_shapes, strict=True):
        for field in dataclasses.fields(ci.ChoiceShape):
            a, b = getattr(got, field.name), getattr(want, field.name)
            assert np.array_equal(a, b), field.name
