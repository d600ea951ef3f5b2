"""The compiled arrays against the object model: membership, costs, and allocate/release."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phalanx.topology.compiled import CapacityError, CompiledCluster
from phalanx.topology.model import MAX_GPUS_PER_NODE, MILLI_PER_GPU, Cluster, FabricLevel, Gpu, Node
from phalanx.topology.presets import cluster_preset

from tests.topology_strategies import clusters

PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def domain_path(cluster: Cluster, node: Node, level: int) -> tuple[str, ...]:
    """The node's domain at fabric level ``level`` (1-based) as the path from the root, which
    is what makes a domain unique (names repeat under different parents)."""
    upper = cluster.levels[level - 1 :]
    return tuple(node.domains[lvl.name] for lvl in reversed(upper))


def usable(node: Node) -> list[int]:
    return [g.index for g in node.gpus if g.healthy and not g.mig_enabled]


@PROPERTY_SETTINGS
@given(clusters())
def test_every_gpu_is_in_one_node_and_one_domain_per_level(cluster):
    compiled = cluster.compile()
    total_usable = sum(len(usable(n)) for n in cluster.nodes)
    assert compiled.gpu_count.tolist() == [n.gpu_count for n in cluster.nodes]
    assert compiled.gpu_usable.sum() == total_usable
    assert compiled.node_domain[0].tolist() == list(range(len(cluster.nodes)))
    for li in range(compiled.n_levels):
        lo, hi = compiled.level_domain_range[li]
        row = compiled.node_domain[li]
        assert ((row >= lo) & (row < hi)).all()
        assert set(row.tolist()) == set(range(lo, hi)), "every domain holds a node"
        assert (compiled.domain_level[lo:hi] == li).all()
        # the level's domains partition the GPUs: capacities add up to every usable GPU once
        assert compiled.domain_gpu_capacity[lo:hi].sum() == total_usable
        if li:
            paths = [domain_path(cluster, n, li) for n in cluster.nodes]
            for a, b in itertools.combinations(range(len(cluster.nodes)), 2):
                assert (row[a] == row[b]) == (paths[a] == paths[b])
        if li + 1 < compiled.n_levels:
            parent = {}
            for d, p in zip(row.tolist(), compiled.node_domain[li + 1].tolist(), strict=True):
                assert parent.setdefault(d, p) == p, "a domain has exactly one parent"
    top = compiled.node_domain[-1]
    assert len(set(top.tolist())) == 1, "the top level is one domain: every pair has an LCA"


@PROPERTY_SETTINGS
@given(clusters())
def test_pair_costs_are_symmetric_zero_on_diagonal_and_rise_with_the_common_level(cluster):
    compiled = cluster.compile()
    n = compiled.n_nodes
    network = ~compiled.level_is_nvlink
    assert np.all(np.diff(compiled.level_cost[1:]) >= 0)
    for node in range(n):
        m = compiled.pair_cost_matrix(node)
        k = int(compiled.gpu_count[node])
        assert np.array_equal(m, m.T)
        assert np.all(np.diag(m)[:k] == 0)
        assert np.all(m[:k, :k] >= 0)
    for a, b in itertools.permutations(range(n), 2):
        cost = compiled.inter_node_cost(a, b)
        assert cost == compiled.inter_node_cost(b, a)
        if compiled.gpu_count[a] and compiled.gpu_count[b]:
            assert compiled.pair_cost(a, 0, b, 0) == compiled.pair_cost(b, 0, a, 0) == cost
        level = compiled.lowest_common_level(a, b)
        if network[level]:
            # leaving a node over the network never beats the slowest path inside either node
            for node in (a, b):
                k = int(compiled.gpu_count[node])
                inside = compiled.pair_cost_matrix(node)[:k, :k]
                finite = inside[np.isfinite(inside)]
                assert cost >= (finite.max() if finite.size else 0.0)
    for a, b, c in itertools.permutations(range(n), 3):
        same_hardware = compiled.node_egress_cost[b] == compiled.node_egress_cost[c]
        if same_hardware and compiled.lowest_common_level(a, b) < compiled.lowest_common_level(
            a, c
        ):
            assert compiled.inter_node_cost(a, b) <= compiled.inter_node_cost(a, c)


def expected_state(cluster: Cluster, used: dict[tuple[int, int], int], taken: dict) -> dict:
    """The mutable arrays recomputed from the object model and a record of what is held."""
    nodes = cluster.nodes
    free_count, masks = [], []
    for ni, node in enumerate(nodes):
        free = [g for g in usable(node) if used.get((ni, g), 0) == 0]
        free_count.append(len(free))
        masks.append(sum(1 << g for g in free))
    domain_free: dict[tuple[int, tuple[str, ...]], int] = {}
    for li in range(1, len(cluster.levels) + 1):
        for ni, node in enumerate(nodes):
            key = (li, domain_path(cluster, node, li))
            domain_free[key] = domain_free.get(key, 0) + free_count[ni]
    return {
        "free_count": free_count,
        "masks": masks,
        "domain_free": domain_free,
        "cpu": [n.cpu_milli - taken[i][0] for i, n in enumerate(nodes)],
        "memory": [n.memory_mib - taken[i][1] for i, n in enumerate(nodes)],
    }


def assert_matches(compiled: CompiledCluster, cluster: Cluster, expect: dict) -> None:
    assert compiled.free_gpu_count.tolist() == expect["free_count"]
    assert [int(m) for m in compiled.free_gpu_mask] == expect["masks"]
    assert compiled.cpu_free_milli.tolist() == expect["cpu"]
    assert compiled.memory_free_mib.tolist() == expect["memory"]
    assert np.array_equal(compiled.domain_free_gpus[: compiled.n_nodes], expect["free_count"])
    for li in range(1, compiled.n_levels):
        for ni, node in enumerate(cluster.nodes):
            d = compiled.node_domain[li, ni]
            key = (li, domain_path(cluster, node, li))
            assert compiled.domain_free_gpus[d] == expect["domain_free"][key]


@PROPERTY_SETTINGS
@given(clusters(max_nodes=6), st.data())
def test_compiled_arrays_agree_with_the_object_model_after_any_allocate_release(cluster, data):
    compiled = cluster.compile()
    used: dict[tuple[int, int], int] = {}
    taken = {i: [0, 0] for i in range(len(cluster.nodes))}
    held: list[tuple[int, tuple[int, ...], int, int, int]] = []
    for _ in range(data.draw(st.integers(1, 25), label="steps")):
        release = held and data.draw(st.booleans(), label="release")
        before = compiled.mutable_state_bytes()
        if release:
            node, gpus, milli, cpu, mem = held.pop(data.draw(st.integers(0, len(held) - 1)))
            compiled.release(node, gpus, milli, cpu, mem)
            for g in gpus:
                used[(node, g)] -= milli
            taken[node][0] -= cpu
            taken[node][1] -= mem
        else:
            node = data.draw(st.integers(0, len(cluster.nodes) - 1), label="node")
            n_gpus = int(compiled.gpu_count[node])
            gpus = tuple(
                data.draw(
                    st.lists(st.integers(0, max(n_gpus - 1, 0)), unique=True, max_size=n_gpus)
                )
                if n_gpus
                else ()
            )
            milli = data.draw(st.sampled_from((250, 500, MILLI_PER_GPU)), label="milli")
            cpu = data.draw(st.integers(0, 8), label="cpu") * 1000
            mem = data.draw(st.integers(0, 8), label="mem") * 1024
            node_obj = cluster.nodes[node]
            fits = (
                all(
                    g in usable(node_obj) and used.get((node, g), 0) + milli <= MILLI_PER_GPU
                    for g in gpus
                )
                and cpu <= node_obj.cpu_milli - taken[node][0]
                and mem <= node_obj.memory_mib - taken[node][1]
            )
            if fits:
                compiled.allocate(node, gpus, milli, cpu, mem)
                for g in gpus:
                    used[(node, g)] = used.get((node, g), 0) + milli
                taken[node][0] += cpu
                taken[node][1] += mem
                held.append((node, gpus, milli, cpu, mem))
            else:
                with pytest.raises(CapacityError):
                    compiled.allocate(node, gpus, milli, cpu, mem)
                assert compiled.mutable_state_bytes() == before, (
                    "a refused allocate changes nothing"
                )
        assert_matches(compiled, cluster, expected_state(cluster, used, taken))
    while held:
        compiled.release(*held.pop())
    assert compiled.mutable_state_bytes() == cluster.compile().mutable_state_bytes()


def test_copy_is_independent_of_the_original():
    compiled = cluster_preset("dgx-h100:4").compile()
    clone = compiled.copy()
    clone.allocate(0, [0, 1], MILLI_PER_GPU, cpu_milli=1000)
    assert compiled.free_gpu_count[0] == 8
    assert clone.free_gpu_count[0] == 6
    assert compiled.domain_free_gpus.sum() != clone.domain_free_gpus.sum()
    assert clone.node_domain is compiled.node_domain, "static arrays are shared"


def test_release_of_more_than_held_is_refused():
    compiled = cluster_preset("dgx-h100:2").compile()
    compiled.allocate(1, [3], 500)
    before = compiled.mutable_state_bytes()
    for args in ((1, [3], 1000), (1, [2], 500), (1, [3], 500, 1)):
        with pytest.raises(CapacityError):
            compiled.release(*args)
    assert compiled.mutable_state_bytes() == before


def test_a_64_gpu_node_uses_every_bit_of_the_free_mask():
    gpus = tuple(Gpu(g, f"g{g}", "X", 1024, pcie_switch=g // 8) for g in range(MAX_GPUS_PER_NODE))
    compiled = Cluster("big", [Node("big", gpus, 1000, 1000)], []).compile()
    assert int(compiled.free_gpu_mask[0]) == (1 << 64) - 1
    compiled.allocate(0, [63], MILLI_PER_GPU)
    assert int(compiled.free_gpu_mask[0]) == (1 << 63) - 1
    assert compiled.free_gpus(0) == list(range(63))


def test_nodes_with_equal_links_share_one_cost_table():
    compiled = cluster_preset("dgx-h100:40").compile()
    assert compiled.shape_pair_cost.shape[0] == 1
    assert np.all(compiled.node_egress_cost == compiled.node_egress_cost[0])


def test_an_nvlink_top_level_gets_a_network_root():
    nodes = [
        dataclasses.replace(n, domains={"clique": n.domains["clique"]})
        for n in cluster_preset("gb200-nvl72:36").nodes
    ]
    cluster = Cluster("two-racks", nodes, [FabricLevel("clique", 0.5, nvlink=True)])
    compiled = cluster.compile()
    assert compiled.level_names == ["node", "clique", "cluster"]
    assert not compiled.level_is_nvlink[2]
    assert compiled.level_cost[2] >= 10.0
    assert compiled.inter_node_cost(0, 1) == 0.5
    assert compiled.inter_node_cost(0, 35) == compiled.level_cost[2]


def test_a_cluster_level_with_several_domains_is_refused():
    nodes = [
        dataclasses.replace(n, domains={"cluster": name})
        for n, name in zip(cluster_preset("dgx-h100:2").nodes, "xy", strict=True)
    ]
    with pytest.raises(ValueError, match="must have one domain"):
        Cluster("bad", nodes, [FabricLevel("cluster", 10.0)])
