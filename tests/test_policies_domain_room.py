"""The topology scorer's domain-room term: the compiled pass equals its numpy reference bit for
bit, on clusters with one and several fabric levels, empty, fragmented and full."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from phalanx.policies.scoring.domain_room import (
    best_packed_room_nodes,
    domain_room_share,
    domain_room_share_reference,
    packed_room_scores,
)
from phalanx.policies.scoring.topology import DOMAIN_ROOM_WEIGHT, PACKING_WEIGHT
from phalanx.scheduler.spread import smallest
from phalanx.topology.clusterfile import load_cluster_file
from phalanx.topology.presets import cluster_preset

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "clusters"
CLUSTERS = ["dgx-h100:300", "gb200-nvl72:144", "hgx-pcie-l40s:8", "file:rail-fat-tree-32.yaml"]


def _cluster(spec: str):
    if spec.startswith("file:"):
        return load_cluster_file(EXAMPLES / spec.removeprefix("file:"))
    return cluster_preset(spec)


def _filled(spec: str, fill: float, rng: np.random.Generator):
    """The cluster with about ``fill`` of its nodes partly or wholly taken."""
    compiled = _cluster(spec).compile()
    for node in np.flatnonzero(rng.random(compiled.n_nodes) < fill).tolist():
        count = int(compiled.gpu_count[node])
        if count:
            compiled.allocate(node, list(range(int(rng.integers(1, count + 1)))), 1000)
    return compiled


@pytest.mark.parametrize("spec", CLUSTERS)
@pytest.mark.parametrize("fill", [0.0, 0.5, 1.0])
def test_kernel_equals_reference(spec: str, fill: float):
    rng = np.random.default_rng(7)
    compiled = _filled(spec, fill, rng)
    for nodes in (
        np.arange(compiled.n_nodes),
        rng.choice(compiled.n_nodes, size=max(1, compiled.n_nodes // 3), replace=False),
        np.array([0], dtype=np.int64),
    ):
        got = domain_room_share(compiled, nodes)
        want = domain_room_share_reference(compiled, nodes)
        assert got.dtype == want.dtype and np.array_equal(got, want)
        for gpus in (0, 1, 4):
            scores = packed_room_scores(compiled, nodes, gpus, PACKING_WEIGHT, DOMAIN_ROOM_WEIGHT)
            assert np.array_equal(scores, numpy_packed_room_scores(compiled, nodes, gpus))


@pytest.mark.parametrize("spec", CLUSTERS)
@pytest.mark.parametrize("fill", [0.0, 0.5, 1.0])
def test_best_nodes_are_the_first_ranked(spec: str, fill: float):
    """The one-pass best nodes are the ones the search keeps first when it ranks every fitting
    node by score (``smallest`` of the negated scores: lowest positions among equal keys)."""
    rng = np.random.default_rng(11)
    compiled = _filled(spec, fill, rng)
    for units in (1, 2):
        node_units = rng.integers(0, 3, compiled.n_nodes)
        for gpus, ties in ((0, 16), (1, 16), (1, 2), (4, 1)):
            got = best_packed_room_nodes(
                compiled, node_units, units, gpus, PACKING_WEIGHT, DOMAIN_ROOM_WEIGHT, ties
            )
            fitting = np.flatnonzero(node_units >= units)
            if fitting.size == 0:
                assert got.size == 0
                continue
            key = -packed_room_scores(compiled, fitting, gpus, PACKING_WEIGHT, DOMAIN_ROOM_WEIGHT)
            kept = smallest(key, ties)
            first = kept[key[kept] == key[kept].min()]
            assert got.tolist() == fitting[first].tolist()


def numpy_packed_room_scores(compiled, nodes: np.ndarray, gpus: int) -> np.ndarray:
    """The topology scorer's first two terms as it computed them in numpy."""
    gpu_count = np.maximum(compiled.gpu_count[nodes], 1)
    left_free = (compiled.free_gpu_count[nodes] - gpus) / gpu_count
    scores = -PACKING_WEIGHT * left_free.astype(np.float64)
    scores -= DOMAIN_ROOM_WEIGHT * domain_room_share_reference(compiled, nodes)
    return scores
