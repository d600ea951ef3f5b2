"""Seeded placement instances for measuring the fast path against the exact (CP-SAT) path.

Each instance is a small cluster (8 to 64 nodes, so that CP-SAT can usually prove optimality
within seconds) built from the node presets on a rail-optimised fat tree, partly filled with
random existing allocations, plus one gang to place. The mix covers what the placement engine
must handle: node types (DGX H100/A100, PCIe L40S, GB200 NVL72 trays, mixed pools), fabrics
(scalable-unit sizes, oversubscribed cores, pods), fill levels 0-90%, gang shapes from 1 to 32
members of 1 to 8 GPUs, fractional and CPU-only members, NVLink groups, quorums, required and
preferred levels, and eligibility filters (products, node selectors, taints).

Everything is drawn from ``numpy.random.default_rng(seed)``, so an instance is reproduced from
its seed alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from phalanx.scheduler.gang import Gang, Member, MemberRequest
from phalanx.scheduler.placement import CostBreakdown, MemberPlacement, Placement
from phalanx.scheduler.state import ClusterState
from phalanx.topology.model import MILLI_PER_GPU, NODE_LEVEL, Cluster, Node
from phalanx.topology.presets import NODE_PRESETS, rail_fat_tree

DEFAULT_INSTANCES = 200
BASE_SEED = 20_240_601
"""Instance ``i`` uses seed ``BASE_SEED + i``."""

NODE_COUNTS = (8, 12, 16, 24, 32, 48, 64)
SU_SIZES = (2, 4, 8, 16)
OVERSUBSCRIPTIONS = (1.0, 1.0, 2.0, 4.0)
SUS_PER_POD_CHOICES = (16, 16, 2, 4)
"""A small value gives pod and core levels even on a small cluster."""
CLIQUE_SIZES = (2, 4)
"""Trays per NVLink clique, scaled down from NVL72's 18 to fit small clusters."""
FILL_LEVELS = (0.0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9)
MEMBER_COUNTS = (1, 2, 2, 3, 4, 4, 6, 8, 8, 12, 16, 24, 32)
MEMBER_GPUS = (1, 1, 2, 2, 3, 4, 4, 6, 8, 8)
FRACTIONAL_MILLI = (100, 250, 300, 500, 700)
COMM_INTENSITIES = (1.0, 1.0, 0.5, 0.2)
BACKGROUND_CHUNKS = (1, 1, 2, 2, 4, 8)
"""Whole-GPU sizes of the random existing allocations."""
UNHEALTHY_GPU_SHARE = 0.02
POOL_LABEL = "phalanx.io/pool"
POOLS = ("train", "serve")
DEDICATED_TAINT = "dedicated"
CPU_PER_GPU_MILLI = 8_000
MEMORY_PER_GPU_MIB = 64 * 1024

P_SIZED_TO_FIT = 0.85
FIT_SHARE = 0.7
"""Most gangs ask for at most this share of the free member-sized slots, so that most
instances are feasible; the rest test proofs of infeasibility."""
P_PACK = 0.6
"""Existing allocations go to an already busy node this often (schedulers pack), so some
nodes stay whole as on a real cluster."""
P_FRACTIONAL = 0.12
P_LEADER = 0.08
"""A CPU-only launcher member in front of GPU workers."""
P_NVLINK_GROUP = 0.15
P_REQUIRED_LEVEL = 0.15
P_PREFERRED_LEVEL = 0.15
P_QUORUM = 0.1
P_PRODUCT_FILTER = 0.3
P_SELECTOR = 0.1
P_TAINTS = 0.15
TAINTED_SHARE = 0.25
"""Of the nodes of a cluster with taints, the share that is tainted."""
MAX_FRACTIONAL_MEMBERS = 8
P_UNHEALTHY = 0.1
P_SHUFFLE = 0.5

FAMILIES = {
    "h100": ("dgx-h100",),
    "a100": ("dgx-a100",),
    "l40s": ("hgx-pcie-l40s",),
    "gb200": ("gb200-nvl72",),
    "mixed": ("dgx-h100", "dgx-a100", "hgx-pcie-l40s"),
    "h100-a100": ("dgx-h100", "dgx-a100"),
}
FAMILY_NAMES = tuple(FAMILIES)


@dataclass(frozen=True)
class Instance:
    """One cluster state and one gang to place on it."""

    name: str
    seed: int
    family: str
    fill: float
    """Target share of GPU capacity taken by the existing allocations."""
    state: ClusterState
    gang: Gang

    @property
    def n_nodes(self) -> int:
        return self.state.compiled.n_nodes


def generate(count: int = DEFAULT_INSTANCES, base_seed: int = BASE_SEED) -> list[Instance]:
    """``count`` instances, instance ``i`` from seed ``base_seed + i``."""
    return [make_instance(base_seed + i, index=i) for i in range(count)]


def make_instance(seed: int, index: int = 0) -> Instance:
    rng = np.random.default_rng(seed)
    family = FAMILY_NAMES[int(rng.integers(len(FAMILY_NAMES)))]
    cluster = _cluster(rng, family, f"inst{index:03d}")
    state = ClusterState(cluster.compile())
    fill = float(rng.choice(FILL_LEVELS))
    _fill(rng, state, fill)
    gang = _gang(rng, state, f"g{index:03d}")
    shape = _shape_text(gang)
    name = f"{index:03d}-{family}-{len(cluster.nodes)}n-fill{round(fill * 100)}-{shape}"
    return Instance(name, seed, family, fill, state, gang)


# ---------------------------------------------------------------------------- clusters
def _cluster(rng: np.random.Generator, family: str, name: str) -> Cluster:
    kinds = FAMILIES[family]
    n_nodes = int(rng.choice(NODE_COUNTS))
    clique = 1
    if kinds == ("gb200-nvl72",):
        clique = int(rng.choice(CLIQUE_SIZES))
    su_nodes = int(rng.choice([s for s in SU_SIZES if s < n_nodes and s % clique == 0]))
    kind_of = [kinds[int(k)] for k in rng.integers(len(kinds), size=n_nodes)]
    if len(kinds) > 1 and rng.random() >= P_SHUFFLE:
        kind_of.sort()
    nodes = [NODE_PRESETS[k].make(f"{name}-n{i:02d}") for i, k in enumerate(kind_of)]
    if rng.random() < P_UNHEALTHY:
        nodes = [_with_unhealthy_gpus(rng, n) for n in nodes]
    for node in nodes:
        node.labels[POOL_LABEL] = POOLS[int(rng.integers(len(POOLS)))]
    if rng.random() < P_TAINTS:
        tainted = rng.random(n_nodes) < TAINTED_SHARE
        nodes = [
            dataclasses.replace(n, taints=(DEDICATED_TAINT,)) if t else n
            for n, t in zip(nodes, tainted, strict=True)
        ]
    levels = rail_fat_tree(
        nodes,
        su_nodes,
        oversubscription=float(rng.choice(OVERSUBSCRIPTIONS)),
        nvlink_domain_nodes=clique,
        sus_per_pod=int(rng.choice(SUS_PER_POD_CHOICES)),
    )
    return Cluster(name, nodes, levels)


def _with_unhealthy_gpus(rng: np.random.Generator, node: Node) -> Node:
    broken = rng.random(node.gpu_count) < UNHEALTHY_GPU_SHARE
    if not broken.any():
        return node
    gpus = tuple(
        dataclasses.replace(g, healthy=False) if b else g
        for g, b in zip(node.gpus, broken, strict=True)
    )
    return dataclasses.replace(node, gpus=gpus)


# ---------------------------------------------------------------------------- fill
def _fill(rng: np.random.Generator, state: ClusterState, target: float) -> None:
    """Random whole-GPU chunks and fractional shares until ``target`` of capacity is used."""
    compiled = state.compiled
    serial = 0
    attempts = 0
    max_attempts = 50 * compiled.n_nodes
    while compiled.gpu_allocation_ratio() < target and attempts < max_attempts:
        attempts += 1
        busy = np.flatnonzero((compiled.free_gpu_count > 0) & (compiled.gpu_used_milli.sum(1) > 0))
        if busy.size and rng.random() < P_PACK:
            node = int(rng.choice(busy))
        else:
            node = int(rng.integers(compiled.n_nodes))
        if rng.random() < P_FRACTIONAL:
            share = int(rng.choice(FRACTIONAL_MILLI))
            room = (MILLI_PER_GPU - compiled.gpu_used_milli[node]) >= share
            gpus = np.flatnonzero(room & compiled.gpu_usable[node])
            if gpus.size == 0:
                continue
            chosen, milli = (int(rng.choice(gpus)),), share
        else:
            free = compiled.free_gpus(node)
            size = int(rng.choice(BACKGROUND_CHUNKS))
            if len(free) < size:
                continue
            chosen = tuple(sorted(int(g) for g in rng.choice(free, size=size, replace=False)))
            milli = MILLI_PER_GPU
        cpu = min(int(compiled.cpu_free_milli[node]), CPU_PER_GPU_MILLI * len(chosen))
        memory = min(int(compiled.memory_free_mib[node]), MEMORY_PER_GPU_MIB * len(chosen))
        member = MemberPlacement(
            f"bg{serial}-0", compiled.node_names[node], node, chosen, milli, cpu, memory
        )
        placement = Placement(
            f"bg{serial}", (member,), NODE_LEVEL, compiled.domain_names[node], CostBreakdown()
        )
        state.assign(placement, now_s=0.0)
        serial += 1


# ---------------------------------------------------------------------------- gangs
def _gang(rng: np.random.Generator, state: ClusterState, name: str) -> Gang:
    cluster = state.compiled.cluster
    node_gpus = max(n.gpu_count for n in cluster.nodes)
    products = sorted({n.product for n in cluster.nodes})
    nvlink_capable = any(g.nvlink_group >= 0 for n in cluster.nodes for g in n.gpus)

    base = _base_request(rng, node_gpus)
    if base.gpu_milli:
        count = int(rng.integers(1, MAX_FRACTIONAL_MEMBERS + 1))
    else:
        count = int(rng.choice(MEMBER_COUNTS))
        if rng.random() < P_SIZED_TO_FIT:
            slots = int((state.compiled.free_gpu_count // base.gpus).sum())
            count = max(1, min(count, int(FIT_SHARE * slots)))
    if rng.random() < P_PRODUCT_FILTER and len(products) > 1:
        chosen = rng.choice(products, size=int(rng.integers(1, len(products))), replace=False)
        base = dataclasses.replace(base, gpu_products=tuple(sorted(str(p) for p in chosen)))
    if rng.random() < P_SELECTOR:
        pool = POOLS[int(rng.integers(len(POOLS)))]
        base = dataclasses.replace(base, node_selector={POOL_LABEL: pool})
    if any(n.taints for n in cluster.nodes) and rng.random() < 0.5:
        base = dataclasses.replace(base, tolerations=(DEDICATED_TAINT,))

    members = [Member(f"{name}-{i}", base) for i in range(count)]
    if rng.random() < P_LEADER and not base.gpu_milli:
        leader = dataclasses.replace(base, gpus=0, cpu_milli=CPU_PER_GPU_MILLI, memory_mib=0)
        members.insert(0, Member(f"{name}-launcher", leader))

    nvlink_group = 0
    grouped = nvlink_capable and base.gpus and len(members) == count
    if grouped and rng.random() < P_NVLINK_GROUP:
        fits = [k for k in (2, 4) if k * base.gpus <= node_gpus and k <= count]
        if fits:
            nvlink_group = int(rng.choice(fits))
    min_members = 0
    if len(members) > 2 and rng.random() < P_QUORUM:
        min_members = int(rng.integers(1, len(members)))
    required = preferred = None
    below_root = _levels_that_could_hold(state, members)
    if below_root and rng.random() < P_REQUIRED_LEVEL:
        required = str(rng.choice(below_root))
    elif below_root and rng.random() < P_PREFERRED_LEVEL:
        preferred = str(rng.choice(below_root))
    return Gang(
        name,
        tuple(members),
        min_members=min_members,
        required_level=required,
        preferred_level=preferred,
        nvlink_group=nvlink_group,
        comm_intensity=float(rng.choice(COMM_INTENSITIES)),
    )


def _levels_that_could_hold(state: ClusterState, members: list[Member]) -> list[str]:
    """Levels below the root with a domain of at least the gang's GPU demand in total
    capacity (a required level that no domain could ever meet is a spec error, not a test)."""
    compiled = state.compiled
    demand = sum(m.request.gpu_milli_total for m in members) / MILLI_PER_GPU
    out = []
    for level in range(compiled.n_levels - 1):
        lo, hi = compiled.level_domain_range[level]
        if compiled.domain_gpu_capacity[lo:hi].max() >= demand:
            out.append(compiled.level_names[level])
    return out


def _base_request(rng: np.random.Generator, node_gpus: int) -> MemberRequest:
    if rng.random() < P_FRACTIONAL:
        milli = int(rng.choice(FRACTIONAL_MILLI))
        return MemberRequest(gpu_milli=milli, cpu_milli=CPU_PER_GPU_MILLI // 2, memory_mib=1024)
    gpus = int(rng.choice([g for g in MEMBER_GPUS if g <= node_gpus]))
    return MemberRequest(
        gpus=gpus,
        cpu_milli=CPU_PER_GPU_MILLI * gpus,
        memory_mib=MEMORY_PER_GPU_MIB * gpus,
    )


def _shape_text(gang: Gang) -> str:
    workers = [m.request for m in gang.members if m.request.gpu_milli_total]
    first = workers[0] if workers else gang.members[0].request
    size = f"{first.gpu_milli}m" if first.gpu_milli else f"{first.gpus}g"
    extras = []
    if len(workers) != len(gang.members):
        extras.append("lead")
    if gang.nvlink_group:
        extras.append(f"nvl{gang.nvlink_group}")
    if gang.min_members:
        extras.append(f"q{gang.min_members}")
    if gang.required_level:
        extras.append(f"req-{gang.required_level}")
    if gang.preferred_level:
        extras.append(f"pref-{gang.preferred_level}")
    return "-".join([f"{len(workers)}x{size}", *extras])
