"""The exact path against exhaustive enumeration on tiny random clusters: same optimum cost,
same member count, and a proof of infeasibility exactly when no placement exists."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phalanx.scheduler.cluster_index import cluster_index
from phalanx.scheduler.cost import lowest_common_domain, placement_cost
from phalanx.scheduler.eligibility import static_mask
from phalanx.scheduler.engine import place
from phalanx.scheduler.exact import solve_detailed
from phalanx.scheduler.gang import Gang, Member, MemberRequest
from phalanx.scheduler.placement import MemberPlacement, Placement
from phalanx.scheduler.state import ClusterState
from phalanx.topology.model import MILLI_PER_GPU, Cluster, Gpu, Node, NvlinkKind
from phalanx.topology.presets import rail_fat_tree

from tests.placement_helpers import assert_valid_placement, nvlink_domain_of, occupy

MINI_GPUS = 4
COST_TOLERANCE = 1e-3
"""The CP-SAT objective is the cost rounded to 1e-5 per term."""


def mini_nvswitch(name: str) -> Node:
    gpus = tuple(
        Gpu(
            g,
            f"{name}-{g}",
            "MINI-NVS",
            1024,
            numa_node=g // 2,
            pcie_switch=g,
            nvlink_group=0,
            rail=g,
        )
        for g in range(MINI_GPUS)
    )
    return Node(name, gpus, cpu_milli=16_000, memory_mib=65_536, nvlink=NvlinkKind.NVSWITCH)


def mini_pcie(name: str) -> Node:
    gpus = tuple(
        Gpu(g, f"{name}-{g}", "MINI-PCIE", 1024, numa_node=g // 2, pcie_switch=g // 2, rail=g // 2)
        for g in range(MINI_GPUS)
    )
    return Node(
        name,
        gpus,
        cpu_milli=16_000,
        memory_mib=65_536,
        nvlink=NvlinkKind.NONE,
        pcie_generation=4,
        network_gbps_per_gpu=12.5,
    )


KINDS = {"nvs": mini_nvswitch, "pcie": mini_pcie}
REQUESTS = [
    MemberRequest(gpus=1, cpu_milli=1000),
    MemberRequest(gpus=2, cpu_milli=1000),
    MemberRequest(gpu_milli=300, cpu_milli=500),
    MemberRequest(gpu_milli=600, cpu_milli=500),
    MemberRequest(cpu_milli=6000),
]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[ClusterState, Gang]:
    kinds = draw(st.lists(st.sampled_from(sorted(KINDS)), min_size=1, max_size=3))
    nodes = [KINDS[k](f"n{i}") for i, k in enumerate(kinds)]
    levels = rail_fat_tree(nodes, su_nodes=2, oversubscription=draw(st.sampled_from([1.0, 3.0])))
    state = ClusterState(Cluster("mini", nodes, levels).compile())
    for node in range(len(nodes)):
        taken = draw(st.lists(st.integers(0, MINI_GPUS - 1), max_size=3, unique=True))
        if taken:
            milli = draw(st.sampled_from([MILLI_PER_GPU, 400]))
            occupy(state, node, taken, milli, cpu_milli=draw(st.sampled_from([0, 8000])))
    requests = draw(st.lists(st.sampled_from(REQUESTS), min_size=1, max_size=3))
    members = tuple(Member(f"m{i}", r) for i, r in enumerate(requests))
    level_names = state.compiled.level_names
    required = draw(st.sampled_from([None, None, *level_names[:-1]]))
    preferred = None if required else draw(st.sampled_from([None, None, *level_names[:-1]]))
    uniform_whole = all(r == requests[0] for r in requests) and requests[0].gpus > 0
    groups_possible = uniform_whole and "nvs" in kinds
    gang = Gang(
        "g",
        members,
        min_members=draw(st.integers(0, len(members))),
        required_level=required,
        preferred_level=preferred,
        nvlink_group=draw(st.sampled_from([0, 2])) if groups_possible else 0,
        comm_intensity=draw(st.sampled_from([1.0, 0.3])),
    )
    return state, gang


def brute_force(gang: Gang, state: ClusterState) -> tuple[int, float | None]:
    """(members placed, cheapest cost) over every assignment of members to GPU sets: the
    whole gang first, else the quorum, as the engine defines it; with a preferred level, the
    narrowest container at or above it first."""
    c = state.compiled
    preferred = c.level_index(gang.preferred_level) if gang.preferred_level else c.n_levels
    sizes = [len(gang.members)] + ([gang.quorum] if gang.quorum < len(gang.members) else [])
    for size in sizes:
        best = None
        options = [_options(state, m.request) for m in gang.members[:size]]
        for combo in itertools.product(*options):
            members = [
                MemberPlacement(m.name, "", node, gpus, milli, m.request.cpu_milli)
                for m, (node, gpus, milli) in zip(gang.members, combo, strict=False)
            ]
            if not _fits(state, gang, members):
                continue
            level, _ = lowest_common_domain(c, [m.node_index for m in members])
            key = (max(level, preferred), placement_cost(c, gang, members).total)
            best = key if best is None else min(best, key)
        if best is not None:
            return size, best[1]
    return 0, None


def _options(state: ClusterState, request: MemberRequest) -> list[tuple[int, tuple, int]]:
    c = state.compiled
    eligible = static_mask(c, cluster_index(c), request)
    out = []
    for node in range(c.n_nodes):
        if not eligible[node]:
            continue
        if request.gpus:
            sets = itertools.combinations(range(int(c.gpu_count[node])), request.gpus)
            out += [(node, s, MILLI_PER_GPU) for s in sets]
        elif request.gpu_milli:
            out += [(node, (g,), request.gpu_milli) for g in range(int(c.gpu_count[node]))]
        else:
            out.append((node, (), 0))
    return out


def _fits(state: ClusterState, gang: Gang, members: list[MemberPlacement]) -> bool:
    c = state.compiled
    used = c.gpu_used_milli.astype(int).copy()
    cpu = c.cpu_free_milli.astype(int).copy()
    for m in members:
        for g in m.gpus:
            used[m.node_index, g] += m.gpu_milli
        cpu[m.node_index] -= m.cpu_milli
    if (used > MILLI_PER_GPU).any() or (cpu < 0).any():
        return False
    k = gang.nvlink_group
    for group in [members[s : s + k] for s in range(0, len(members), k)] if k else []:
        gpus = [(m.node_index, g) for m in group for g in m.gpus]
        if len(gpus) >= 2 and len({nvlink_domain_of(state, n, g) for n, g in gpus}) > 1:
            return False
    if gang.required_level:
        level, _ = lowest_common_domain(c, [m.node_index for m in members])
        return level <= c.level_index(gang.required_level)
    return True


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenarios(), st.booleans())
def test_exact_matches_exhaustive_search(scenario, with_hint):
    """With the fast path's answer as a hint, the bound pruning and the incumbent are
    exercised as well."""
    state, gang = scenario
    before = state.compiled.mutable_state_bytes()
    size, best = brute_force(gang, state)
    fast = place(gang, state, solver="fast") if with_hint else None
    hint = fast if isinstance(fast, Placement) else None
    answer = solve_detailed(gang, state, time_limit_s=10.0, num_workers=1, hint=hint)
    assert state.compiled.mutable_state_bytes() == before
    if best is None:
        assert answer.proven_infeasible, answer.result
        return
    result = answer.result
    assert isinstance(result, Placement), result
    assert result.optimal
    assert len(result.members) == size
    assert abs(result.cost.total - best) < COST_TOLERANCE
    assert abs(answer.model_cost - result.cost.total) < COST_TOLERANCE
    assert answer.bound <= result.cost.total + COST_TOLERANCE
    assert_valid_placement(gang, result, state)
