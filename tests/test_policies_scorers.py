"""Placement scorers: FGD against a plain re-implementation of its definition, the FGD paper's
baselines against hand-computed artifact scores, and the topology / packing scorers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phalanx.policies.registry import get_scorer
from phalanx.policies.scoring.fgd import FgdScorer, artifact_points
from phalanx.policies.scoring.fgd_workload import DEFAULT_TASK_COUNTS, TaskType, Workload
from phalanx.policies.scoring.tie_break import TIE_JITTER, TieBreaker
from phalanx.scheduler.engine import place
from phalanx.scheduler.gang import Gang, MemberRequest
from phalanx.scheduler.interfaces import PlacementScorer
from phalanx.scheduler.placement import Placement
from phalanx.scheduler.state import ClusterState
from phalanx.topology.compiled import CompiledCluster
from phalanx.topology.model import MILLI_PER_GPU, Cluster, FabricLevel, Gpu, Node
from phalanx.topology.presets import cluster_preset

GPU_MEMORY_MIB = 16_000
NODE_MEMORY_MIB = 256_000


def cluster(specs: list[tuple[str, int, int]]) -> CompiledCluster:
    """One node per (GPU model, GPU count, cpu milli), all under one rack."""
    nodes = []
    for i, (product, n_gpus, cpu) in enumerate(specs):
        gpus = tuple(Gpu(g, f"n{i}-{g}", product, GPU_MEMORY_MIB) for g in range(n_gpus))
        nodes.append(Node(f"n{i}", gpus, cpu, NODE_MEMORY_MIB, domains={"rack": "r"}))
    return Cluster("test", nodes, [FabricLevel("rack", 10.0)]).compile()


def only(task: TaskType) -> Workload:
    return Workload((task,), (1.0,))


SHARE_500 = TaskType(gpus=1, gpu_milli=500)
ALL = np.arange(1)


# ---------------------------------------------------------------------------- FGD by hand
def test_fragmentation_by_hand() -> None:
    c = cluster([("A", 2, 8000)])
    c.allocate(0, [0], 600)  # free: 400, 1000
    assert FgdScorer(only(SHARE_500)).node_fragmentation(c, ALL)[0] == 400
    half_cpu = Workload((SHARE_500, TaskType(cpu_milli=1000)), (0.5, 0.5))
    assert FgdScorer(half_cpu).node_fragmentation(c, ALL)[0] == 0.5 * 400 + 0.5 * 1400
    other_model = TaskType(gpus=1, gpu_milli=500, products=("B",))
    assert FgdScorer(only(other_model)).node_fragmentation(c, ALL)[0] == 1400
    too_hungry = TaskType(cpu_milli=9000, gpus=1, gpu_milli=500)
    assert FgdScorer(only(too_hungry)).node_fragmentation(c, ALL)[0] == 1400
    two_whole = TaskType(gpus=2, gpu_milli=1000)
    assert FgdScorer(only(two_whole)).node_fragmentation(c, ALL)[0] == 1400


def test_fgd_scores_and_picks_by_hand() -> None:
    c = cluster([("A", 2, 8000)])
    c.allocate(0, [0], 600)
    fgd = FgdScorer(only(SHARE_500), artifact_scores=False)
    share = MemberRequest(gpu_milli=300)
    assert fgd.score(c, share, ALL)[0] == pytest.approx(0.3)  # 400 -> 100 stranded
    assert fgd.pick_gpu(c, share, 0) == 0
    assert fgd.score(c, MemberRequest(gpus=1), ALL)[0] == 0.0  # 400 stranded either way
    assert fgd.pick_gpu(c, MemberRequest(gpus=1), 0) is None
    assert fgd.pick_gpu(c, MemberRequest(gpu_milli=900), 0) == 1
    c.allocate(0, [1], 200)
    assert fgd.pick_gpu(c, MemberRequest(gpu_milli=900), 0) is None


def test_artifact_scores_are_integer_points_with_tie_jitter() -> None:
    c = cluster([("A", 2, 8000), ("A", 2, 8000)])
    c.allocate(1, [0], 600)
    fgd = FgdScorer(only(SHARE_500))
    scores = fgd.score(c, MemberRequest(gpu_milli=500), np.arange(2))
    assert 50 <= scores[0] < 50 + TIE_JITTER, "no change in fragmentation: 50 points"
    # 400 -> 100 stranded on node 1: int(100 * sigmoid(300 / 1000)) = 57
    assert np.floor(fgd.score(c, MemberRequest(gpu_milli=300), np.arange(2))).tolist() == [50, 57]


def test_artifact_share_goes_to_the_first_gpu_with_the_most_points() -> None:
    c = cluster([("A", 2, 8000)])
    c.allocate(0, [0], 470)  # free 530: a 500 share strands 30
    c.allocate(0, [1], 490)  # free 510: a 500 share strands 10
    share = MemberRequest(gpu_milli=500)
    # both options score int(100 * sigmoid(-0.03 or -0.01)) = 49: the first GPU wins the tie
    assert FgdScorer(only(SHARE_500)).pick_gpu(c, share, 0) == 0
    assert FgdScorer(only(SHARE_500), artifact_scores=False).pick_gpu(c, share, 0) == 1
    c.allocate(0, [0, 1], 100)
    assert FgdScorer(only(SHARE_500)).pick_gpu(c, share, 0) is None


def test_ties_follow_one_node_order_for_the_whole_run() -> None:
    c = cluster([("A", 8, 64000)] * 12)
    nodes = np.arange(12)
    breaker = TieBreaker(seed=5)
    first = breaker.integer_scores(c, nodes, np.zeros(12))
    assert np.array_equal(breaker.integer_scores(c, nodes, np.zeros(12)), first)
    assert np.all((first > 0) & (first < TIE_JITTER)), "jitter stays below one point"
    order = nodes[np.argsort(-first)]
    for subset in (order[3:], order[[7, 2, 9]], nodes[::-1]):
        winner = subset[np.argmax(breaker.integer_scores(c, subset, np.zeros(len(subset))))]
        assert winner == min(subset, key=order.tolist().index), "earliest node in the order"
    raised = breaker.integer_scores(c, nodes, (nodes == order[-1]).astype(float))
    assert np.argmax(raised) == order[-1], "a higher score beats any tie-break"
    other = TieBreaker(seed=6).integer_scores(c, nodes, np.zeros(12))
    assert not np.array_equal(np.argsort(other), np.argsort(first))


def reference_fragmentation(free: list[int], cpu: int, product: str, workload: Workload) -> float:
    """The FGD artifact's NodeGpuShareFragAmount, written the plain way."""
    total = sum(free)
    frag = 0.0
    for task, p in zip(workload.tasks, workload.popularity, strict=True):
        if task.gpus == 0 or not product or (task.products and product not in task.products):
            frag += p * total
            continue
        runs = sum(f >= task.gpu_milli for f in free) >= task.gpus and cpu >= task.cpu_milli
        frag += p * (sum(f for f in free if f < task.gpu_milli) if runs else total)
    return frag


tasks = st.builds(
    TaskType,
    cpu_milli=st.sampled_from([0, 2000, 8000]),
    gpus=st.sampled_from([0, 1, 1, 2, 4]),
    gpu_milli=st.sampled_from([100, 250, 500, 700, 1000]),
    products=st.sampled_from([(), ("A",), ("B",), ("A", "B")]),
).map(lambda t: t if t.gpus else TaskType(cpu_milli=t.cpu_milli))
workloads = st.dictionaries(tasks, st.integers(1, 50), min_size=1, max_size=6).map(
    lambda counts: Workload.from_counts(counts, popularity_threshold=1.0)
)
node_specs = st.lists(
    st.tuples(
        st.sampled_from(["A", "B", ""]),
        st.sampled_from([1, 2, 4, 8]),
        st.sampled_from([4000, 16000]),
    ),
    min_size=1,
    max_size=5,
)
requests = st.one_of(
    st.builds(
        MemberRequest,
        gpu_milli=st.sampled_from([100, 300, 500, 900]),
        cpu_milli=st.sampled_from([0, 1000]),
    ),
    st.builds(MemberRequest, gpus=st.sampled_from([0, 1, 2]), cpu_milli=st.sampled_from([0, 1000])),
)


@settings(max_examples=80, deadline=None)
@given(node_specs, workloads, st.lists(requests, min_size=1, max_size=12), st.data())
def test_fgd_remembered_scores_equal_fresh_ones(
    specs: list[tuple[str, int, int]],
    workload: Workload,
    sequence: list[MemberRequest],
    data: st.DataObject,
) -> None:
    """One scorer kept across placements and releases (its memo reused) scores every node
    exactly as a new scorer does, in artifact points and in exact deltas."""
    specs = [(p if n else "", n if p else 0, cpu) for p, n, cpu in specs]
    c = cluster(specs)
    kept = [FgdScorer(workload), FgdScorer(workload, artifact_scores=False)]
    nodes = np.arange(c.n_nodes)
    held: list[tuple[int, list[int], int, int]] = []
    for request in sequence:
        for scorer in kept:
            fresh = FgdScorer(workload, artifact_scores=scorer.artifact_scores)
            assert np.array_equal(scorer.score(c, request, nodes), fresh.score(c, request, nodes))
            assert np.array_equal(
                scorer.node_fragmentation(c, nodes), fresh.node_fragmentation(c, nodes)
            )
        if held and data.draw(st.booleans()):
            node, gpus, milli, cpu = held.pop(data.draw(st.integers(0, len(held) - 1)))
            c.release(node, gpus, milli, cpu)
            continue
        node = data.draw(st.integers(0, c.n_nodes - 1))
        free = [g for g in range(specs[node][1]) if c.gpu_used_milli[node, g] == 0]
        cpu = 1000 if c.cpu_free_milli[node] >= 1000 else 0
        if free:
            c.allocate(node, free[:1], 500, cpu)
            held.append((node, free[:1], 500, cpu))


@settings(max_examples=150, deadline=None)
@given(node_specs, workloads, requests, st.data())
def test_fgd_matches_the_definition(
    specs: list[tuple[str, int, int]],
    workload: Workload,
    request: MemberRequest,
    data: st.DataObject,
) -> None:
    specs = [(p if n else "", n if p else 0, cpu) for p, n, cpu in specs]
    c = cluster(specs)
    for node, (_, n_gpus, _) in enumerate(specs):
        for g in range(n_gpus):
            used = data.draw(st.sampled_from([0, 0, 250, 500, 800, 1000]))
            if used:
                c.allocate(node, [g], used)
    fgd = FgdScorer(workload, artifact_scores=False)
    artifact = FgdScorer(workload)
    nodes = np.arange(c.n_nodes)

    def frag(node: int, free: list[int], cpu: int) -> float:
        return reference_fragmentation(free, cpu, specs[node][0], workload)

    def free_of(node: int) -> list[int]:
        return [1000 - int(u) for u in c.gpu_used_milli[node, : specs[node][1]]]

    before = [frag(n, free_of(n), int(c.cpu_free_milli[n])) for n in range(c.n_nodes)]
    assert np.allclose(fgd.node_fragmentation(c, nodes), before)
    fits = [
        n
        for n in range(c.n_nodes)
        if c.cpu_free_milli[n] >= request.cpu_milli
        and (
            sum(f >= request.gpu_milli for f in free_of(n)) >= 1
            if request.is_fractional
            else sum(f == 1000 for f in free_of(n)) >= request.gpus
        )
    ]
    if not fits:
        return
    scores = fgd.score(c, request, np.array(fits))
    points = np.floor(artifact.score(c, request, np.array(fits)))
    assert np.array_equal(points, artifact_points(MILLI_PER_GPU * scores))
    for node, score in zip(fits, scores, strict=True):
        free, cpu = free_of(node), int(c.cpu_free_milli[node]) - request.cpu_milli
        if request.is_fractional:
            options = [
                frag(
                    node, [f - request.gpu_milli if i == g else f for i, f in enumerate(free)], cpu
                )
                if free[g] >= request.gpu_milli
                else np.inf
                for g in range(len(free))
            ]
            after = min(options)
            assert fgd.pick_gpu(c, request, node) == int(np.argmin(options))
        else:
            taken = [i for i, f in enumerate(free) if f == 1000][: request.gpus]
            after = frag(node, [0 if i in taken else f for i, f in enumerate(free)], cpu)
        assert score == pytest.approx((before[node] - after) / 1000)


def test_workload_keeps_the_popular_types() -> None:
    reqs = (
        [MemberRequest(gpus=1)] * 60 + [MemberRequest(gpu_milli=500)] * 30 + [MemberRequest()] * 10
    )
    workload = Workload.from_requests(reqs, popularity_threshold=0.9)
    assert workload.tasks == (TaskType(gpus=1, gpu_milli=1000), TaskType(gpus=1, gpu_milli=500))
    assert workload.popularity == pytest.approx((2 / 3, 1 / 3))
    gpu_only = Workload.from_requests(reqs, popularity_threshold=1.0, include_cpu_tasks=False)
    assert TaskType() not in gpu_only.tasks
    with_memory = Workload.from_requests([MemberRequest(gpus=1, memory_mib=5)], include_memory=True)
    assert with_memory.tasks[0].memory_mib == 5
    default = Workload.default()
    assert len(default.tasks) == len(DEFAULT_TASK_COUNTS)
    assert sum(default.popularity) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="popularity_threshold"):
        Workload.from_requests(reqs, popularity_threshold=0)
    with pytest.raises(ValueError, match="sum to"):
        Workload((SHARE_500,), (0.5,))


def allocated_milli(scorer_name: str, seed: int) -> int:
    """Place random shares until the first failure; return the milli-GPU placed."""
    state = ClusterState(cluster([("A", 4, 64000)] * 6))
    rng = np.random.default_rng(seed)
    scorer = get_scorer(
        scorer_name, **({"workload": mix} if scorer_name == "fgd" else {"seed": seed})
    )
    placed = 0
    for i in range(200):
        milli = int(rng.choice([1000, 500, 250, 750]))
        request = MemberRequest(gpus=1) if milli == 1000 else MemberRequest(gpu_milli=milli)
        result = place(Gang.uniform(f"p{i}", 1, request), state, scorer=scorer)
        if not isinstance(result, Placement):
            break
        state.assign(result, 0.0)
        placed += milli
    return placed


mix = Workload.from_counts(
    {TaskType(gpus=1, gpu_milli=m): 1 for m in (1000, 500, 250, 750)}, popularity_threshold=1.0
)


def test_fgd_packs_more_than_random_before_the_first_failure() -> None:
    fgd = sum(allocated_milli("fgd", seed) for seed in range(3))
    rnd = sum(allocated_milli("random", seed) for seed in range(3))
    assert fgd > rnd


# ---------------------------------------------------------------------------- baselines
def test_bestfit_and_dotprod_by_hand() -> None:
    c = cluster([("A", 8, 64000), ("A", 8, 128000)])
    c.allocate(0, [0, 1, 2, 3, 4, 5], 1000, cpu_milli=32000)  # node 0: 2 GPUs, 32 cores free
    req = MemberRequest(gpus=1, cpu_milli=8000)
    best = get_scorer("bestfit").score(c, req, np.arange(2))
    # 1 - (0.5 * (32000 - 8000) / 128000 + 0.5 * (2000 - 1000) / 8000) = 0.84375 -> 84
    # 1 - (0.5 * (128000 - 8000) / 128000 + 0.5 * (8000 - 1000) / 8000) = 0.09375 -> 9
    assert np.floor(best).tolist() == [84, 9]
    dot = get_scorer("dotprod").score(c, req, np.arange(2))
    # 1 - 0.5 * (32000/128000 * 8000/128000 + 2000/8000 * 1000/8000) = 0.9765... -> 97
    # 1 - 0.5 * (1 * 8000/128000 + 1 * 1000/8000) = 0.90625 -> 90
    assert np.floor(dot).tolist() == [97, 90]


def test_gpu_packing_bands_by_hand() -> None:
    c = cluster([("A", 8, 64000), ("A", 8, 64000), ("A", 8, 64000)])
    c.allocate(1, [0], 1000)  # used node, whole GPUs free
    c.allocate(2, [0], 400)  # a shared GPU with 600 free
    packing = get_scorer("gpu-packing")
    share = np.floor(packing.score(c, MemberRequest(gpu_milli=500), np.arange(3))).tolist()
    assert share == [25, 49, 94]  # idle max(33-8, 8); used max(50-1, 33); shared 100 - 60 // 10
    whole = np.floor(packing.score(c, MemberRequest(gpus=2), np.arange(3))).tolist()
    assert whole == [25, 48, 48]
    assert np.floor(packing.score(c, MemberRequest(cpu_milli=1), np.arange(3))).tolist() == [
        0,
        0,
        0,
    ]


def test_gpu_clustering_bands_by_hand() -> None:
    state = ClusterState(cluster([("A", 8, 64000)] * 4))
    scorer = get_scorer("gpu-clustering")
    with pytest.raises(ValueError, match="bind it to the cluster state"):
        scorer.score(state.compiled, MemberRequest(gpus=1), np.arange(4))
    scorer.bind_state(state)  # type: ignore[attr-defined]
    put(state, "one-a", MemberRequest(gpus=1), _OnlyNode(0))
    put(state, "one-b", MemberRequest(gpus=1), _OnlyNode(1))
    put(state, "share-b", MemberRequest(gpu_milli=500), _OnlyNode(1))
    put(state, "share-c", MemberRequest(gpu_milli=500), _OnlyNode(2))
    scores = np.floor(scorer.score(state.compiled, MemberRequest(gpus=1), np.arange(4))).tolist()
    # only "1-gpu": 75 + 25 * 1000 // 8000; mixed: 50 + 25 * 1500 // 8000; other: 0 + 1; idle: 25
    assert scores == [78, 54, 1, 25]
    state.release("one-a")
    assert np.floor(scorer.score(state.compiled, MemberRequest(gpus=1), np.arange(4)))[0] == 25


def test_gpu_packing_fills_one_used_node_before_the_next() -> None:
    """Every used node with a free GPU scores 49 for a 1-GPU pod; the artifact's scheduler sends
    them all to the same node (its fixed tie order) until it is full, where random tie-breaking
    would scatter them (all three on one node: 1 chance in 36)."""
    state = ClusterState(cluster([("A", 4, 64000)] * 6))
    for node in range(6):
        put(state, f"first-{node}", MemberRequest(gpus=1), _OnlyNode(node))
    packing = get_scorer("gpu-packing", seed=3)
    nodes = {put(state, f"next-{i}", MemberRequest(gpus=1), packing) for i in range(3)}
    assert len(nodes) == 1
    assert state.compiled.free_gpu_count[nodes.pop()] == 0


def put(state: ClusterState, name: str, request: MemberRequest, scorer: PlacementScorer) -> int:
    """Place and assign a one-member gang; return its node."""
    result = place(Gang.uniform(name, 1, request), state, scorer=scorer)
    assert isinstance(result, Placement)
    state.assign(result, 0.0)
    return result.members[0].node_index


class _OnlyNode:
    """Test scorer: force a node."""

    name = "only-node"

    def __init__(self, node: int) -> None:
        self.node = node

    def score(
        self, compiled: CompiledCluster, request: MemberRequest, nodes: np.ndarray
    ) -> np.ndarray:
        return (np.asarray(nodes) == self.node).astype(float)

    def pick_gpu(self, compiled: CompiledCluster, request: MemberRequest, node: int) -> int | None:
        return None


def test_random_is_seeded_and_picks_fitting_gpus() -> None:
    c = cluster([("A", 4, 8000)] * 3)
    c.allocate(0, [0, 1], 800)
    a, b = get_scorer("random", seed=3), get_scorer("random", seed=3)
    nodes = np.arange(3)
    assert np.array_equal(
        a.score(c, MemberRequest(gpus=1), nodes), b.score(c, MemberRequest(gpus=1), nodes)
    )
    picks = {a.pick_gpu(c, MemberRequest(gpu_milli=500), 0) for _ in range(30)}
    assert picks == {2, 3}


# ---------------------------------------------------------------------------- packing, topology
def test_binpack_and_spread_by_allocation() -> None:
    c = cluster([("A", 8, 64000), ("A", 8, 64000)])
    c.allocate(0, [0, 1, 2, 3], 1000)
    c.allocate(0, [4], 300)
    req = MemberRequest(gpus=1)
    nodes = np.arange(2)
    assert np.argmax(get_scorer("binpack").score(c, req, nodes)) == 0
    assert np.argmax(get_scorer("spread").score(c, req, nodes)) == 1
    share = MemberRequest(gpu_milli=200)
    assert get_scorer("binpack").pick_gpu(c, share, 0) == 4, "busiest GPU that fits"
    assert get_scorer("spread").pick_gpu(c, share, 0) == 5, "emptiest GPU"


def test_topology_prefers_the_best_connected_free_gpus() -> None:
    c = cluster_preset("hgx-pcie-l40s:2").compile()
    c.allocate(0, [2, 3, 4, 5, 6, 7], 1000)  # free 0,1: same PCIe switch
    c.allocate(1, [0, 1, 2, 5, 6, 7], 1000)  # free 3,4: across sockets
    topo = get_scorer("topology")
    scores = topo.score(c, MemberRequest(gpus=2), np.arange(2))
    assert scores[0] > scores[1]
    assert scores[1] - scores[0] < -10, "a cross-socket pair costs 30, a switch pair 15"
    single = topo.score(c, MemberRequest(gpus=1), np.arange(2))
    assert single[0] == single[1], "one GPU has no links to care about"


def test_weighted_scores_normalise_each_part() -> None:
    c = cluster([("A", 8, 64000), ("A", 8, 64000), ("A", 8, 64000)])
    c.allocate(0, [0, 1, 2, 3, 4, 5], 1000)
    c.allocate(1, [0, 1, 2], 1000)
    nodes = np.arange(3)
    req = MemberRequest(gpus=1)
    assert get_scorer("binpack+spread").score(c, req, nodes).tolist() == [1.0, 1.0, 1.0]
    tilted = get_scorer("3*binpack+1*spread").score(c, req, nodes)
    assert tilted.tolist() == pytest.approx([3.0, 3 * 0.5 + 0.5, 1.0])
    assert get_scorer("topology+spread").pick_gpu(c, MemberRequest(gpu_milli=100), 0) == 6


@settings(max_examples=25, deadline=None)
@given(
    preset=st.sampled_from(["hgx-pcie-l40s:6", "dgx-h100:6", "gb200-nvl72:1", "philly:6"]),
    seed=st.integers(0, 2**16),
    gpus=st.integers(2, 8),
)
def test_topology_link_table_equals_pricing_each_node(preset: str, seed: int, gpus: int) -> None:
    """The table of links by (node shape, free-GPU mask) gives each node exactly what
    :func:`best_leftover_link` of its free GPUs gives, also after the masks change."""
    from phalanx.scheduler.cost import best_leftover_link

    c = cluster_preset(preset).compile()
    rng = np.random.default_rng(seed)
    topo = get_scorer("topology")
    for _ in range(3):
        for node in range(c.n_nodes):
            free = [g for g in range(int(c.gpu_count[node])) if c.free_gpu_mask[node] >> g & 1]
            take = rng.choice(free, size=rng.integers(0, len(free) + 1), replace=False)
            if take.size:
                c.allocate(node, sorted(take.tolist()), MILLI_PER_GPU)
        nodes = np.arange(c.n_nodes)
        got = topo._bottleneck(c, gpus, nodes)
        for node in nodes.tolist():
            free = [g for g in range(c.max_gpus) if c.free_gpu_mask[node] >> g & 1]
            pair = c.shape_pair_cost[c.node_shape[node]]
            assert got[node] == best_leftover_link(pair[np.ix_(free, free)], gpus)
        for node in range(c.n_nodes):  # free everything for the next round
            used = [g for g in range(int(c.gpu_count[node])) if not c.free_gpu_mask[node] >> g & 1]
            if used:
                c.release(node, used, MILLI_PER_GPU)
