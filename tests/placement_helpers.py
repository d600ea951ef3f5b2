"""Helpers shared by the placement tests: occupying GPUs before a placement, random ledger
writes on mixed clusters, and checking that a placement honours every hard constraint of its
gang, independently of the engine's code."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from hypothesis import strategies as st
from phalanx.scheduler.gang import Gang, MemberRequest
from phalanx.scheduler.placement import CostBreakdown, MemberPlacement, Placement
from phalanx.scheduler.state import ClusterState
from phalanx.topology.compiled import CompiledCluster
from phalanx.topology.model import MILLI_PER_GPU, Cluster, Node
from phalanx.topology.presets import dgx_a100, dgx_h100, hgx_pcie_l40s, rail_fat_tree

NODE_MAKERS = {"h": dgx_h100, "a": dgx_a100, "l": hgx_pcie_l40s}
"""Node kinds of :func:`mixed_state` by letter: three GPU models and link shapes."""
A100 = "NVIDIA-A100-SXM4-80GB"


def mixed_state(kinds: str, su_nodes: int = 4) -> ClusterState:
    """Nodes of the kinds spelt by ``kinds`` (``"hal"``) in scalable units of ``su_nodes``."""
    nodes: list[Node] = [NODE_MAKERS[k](f"{k}{i}") for i, k in enumerate(kinds)]
    return ClusterState(Cluster("mixed", nodes, rail_fat_tree(nodes, su_nodes)).compile())


one_member_requests = st.builds(
    MemberRequest,
    gpus=st.integers(1, 8),
    cpu_milli=st.sampled_from([0, 1000, 64_000, 200_000]),
    memory_mib=st.sampled_from([0, 1024, 900_000]),
    gpu_products=st.sampled_from([(), (A100,)]),
)
"""Whole-GPU requests with cpu, memory and GPU-model filters that bind on some nodes."""
ledger_operations = st.tuples(
    st.sampled_from(["take", "share", "release"]),
    st.integers(0, 11),
    st.integers(1, 8),
    st.sampled_from([0, 8000, 100_000]),
)
"""(kind, node, GPUs, cpu milli) for :meth:`RandomLedger.apply` on 12 nodes."""


class RandomLedger:
    """Allocations and releases written straight to a cluster's arrays, as a ledger's
    reservations and completions would write them."""

    def __init__(self, compiled: CompiledCluster, seed: int) -> None:
        self.compiled = compiled
        self.rng = np.random.default_rng(seed)
        self.held: list[tuple[int, tuple[int, ...], int, int]] = []

    def apply(self, kind: str, node: int, count: int, cpu_milli: int) -> None:
        """``take`` ``count`` whole free GPUs (or a quarter of one GPU when fewer are free),
        ``share`` a quarter of one GPU, or ``release`` a random earlier allocation."""
        c, rng, held = self.compiled, self.rng, self.held
        if kind == "release":
            if held:
                n, gpus, milli, cpu_taken = held.pop(int(rng.integers(len(held))))
                c.release(n, gpus, milli, cpu_taken)
            return
        free = np.flatnonzero(c.gpu_used_milli[node] == 0)
        if kind == "take" and free.size >= count:
            gpus = tuple(int(g) for g in rng.choice(free, size=count, replace=False))
            milli = MILLI_PER_GPU
        else:
            room = np.flatnonzero(c.gpu_usable[node] & (c.gpu_used_milli[node] <= 750))
            if not room.size:
                return
            gpus, milli = (int(room[0]),), 250
        if cpu_milli > c.cpu_free_milli[node]:
            cpu_milli = 0
        c.allocate(node, gpus, milli, cpu_milli)
        held.append((node, gpus, milli, cpu_milli))


def occupy(
    state: ClusterState,
    node: int,
    gpus: Sequence[int],
    gpu_milli: int = MILLI_PER_GPU,
    cpu_milli: int = 0,
    memory_mib: int = 0,
) -> str:
    """Hold ``gpus`` of ``node`` under a background gang; returns the gang's name."""
    c = state.compiled
    name = f"bg{len(state.holdings)}"
    member = MemberPlacement(
        f"{name}-0", c.node_names[node], node, tuple(gpus), gpu_milli, cpu_milli, memory_mib
    )
    state.assign(Placement(name, (member,), "node", c.domain_names[node], CostBreakdown()), 0.0)
    return name


def half_busy(cluster: Cluster, seed: int) -> ClusterState:
    """A fresh state of ``cluster`` in which about half the nodes have some of their GPUs
    taken (seeded)."""
    state = ClusterState(cluster.compile())
    rng = np.random.default_rng(seed)
    for node in range(state.compiled.n_nodes):
        free = state.compiled.free_gpus(node)
        if free and rng.random() < 0.5:
            taken = rng.choice(free, size=rng.integers(1, len(free) + 1), replace=False)
            occupy(state, node, sorted(taken.tolist()))
    return state


def fill_nodes(state: ClusterState, nodes: Sequence[int]) -> None:
    """Take every usable GPU of ``nodes``."""
    for node in nodes:
        occupy(state, node, state.compiled.free_gpus(node))


def nvlink_domain_of(state: ClusterState, node: int, gpu: int) -> tuple:
    """An identifier of the NVLink domain a GPU belongs to (node-local or a multi-node clique)."""
    c = state.compiled
    nvlink_levels = [lvl for lvl in range(c.n_levels) if c.level_is_nvlink[lvl]]
    if nvlink_levels:
        return ("clique", int(c.node_domain[max(nvlink_levels), node]))
    group = c.cluster.nodes[node].gpus[gpu].nvlink_group
    return ("node", node, group if group >= 0 else f"alone{gpu}")


def assert_valid_placement(gang: Gang, placement: Placement, state: ClusterState) -> None:
    """Every hard constraint of ``gang`` holds, and the placement can be reserved."""
    c = state.compiled
    by_name = {m.name: (i, m) for i, m in enumerate(gang.members)}
    placed = placement.members
    assert len(placed) in (len(gang.members), gang.quorum)
    assert [m.member for m in placed] == [m.name for m in gang.members[: len(placed)]]
    for m in placed:
        rank, member = by_name[m.member]
        request = member.request
        node = c.cluster.nodes[m.node_index]
        assert m.node == node.name and m.rank == rank
        if request.gpus:
            assert len(m.gpus) == request.gpus and m.gpu_milli == MILLI_PER_GPU
        elif request.gpu_milli:
            assert len(m.gpus) == 1 and m.gpu_milli == request.gpu_milli
        else:
            assert m.gpus == ()
        assert (m.cpu_milli, m.memory_mib) == (request.cpu_milli, request.memory_mib)
        if request.gpu_products and request.gpu_milli_total:
            assert node.product in request.gpu_products
        for key, value in request.node_selector.items():
            assert node.labels.get(key) == value
        assert set(node.taints) <= set(request.tolerations)
    if gang.required_level:
        level = c.level_index(gang.required_level)
        domains = {int(c.node_domain[level, m.node_index]) for m in placed}
        assert len(domains) == 1, f"members span {len(domains)} {gang.required_level} domains"
    if gang.nvlink_group:
        for start in range(0, len(placed), gang.nvlink_group):
            group = placed[start : start + gang.nvlink_group]
            gpus = [(m.node_index, g) for m in group for g in m.gpus]
            if len(gpus) >= 2:
                domains = {nvlink_domain_of(state, n, g) for n, g in gpus}
                assert len(domains) == 1, f"NVLink group at {start} spans {domains}"
    trial = state.copy()
    trial.reserve(placement, now_s=0.0, ttl_s=1.0)
    trial.check_invariants()
