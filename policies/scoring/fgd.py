"""Fragmentation gradient descent (Weng et al., "Beware of Fragmentation", USENIX ATC '23).

Fragmentation of a node for one task type m (the paper's section 3, the artifact's
``NodeGpuShareFragAmount``): if m cannot run on the node at all (too little cpu or memory, not
enough GPUs with room for its per-GPU share, a GPU model it does not accept, or m needs no GPU)
every free GPU milli of the node is fragmented for m; otherwise only the free milli of GPUs with
less room than m's per-GPU share is. A node's fragmentation for the workload is the
popularity-weighted expectation over task types. FGD puts each task where that expectation
grows least: score = -(fragmentation after - fragmentation before), in GPUs; a share goes to
the GPU of the node that minimises it.

Every candidate node (and, for a share, every GPU of every candidate) is evaluated in one numba
pass (:mod:`.fgd_kernels`): the per-task test only needs, for each distinct per-GPU share s of
the workload, how many GPUs have at least s free and how much free milli sits on GPUs with
less than s.

By default the scores are the artifact's (``fgd_score.go``): integer points
``int(100 * sigmoid(delta_milli / 1000))``, equal points broken by the run's fixed node order
(:mod:`.tie_break`), and a share goes to the first GPU with the most points. The rounding
matters: one point is about 40 milli-GPU of fragmentation, so many nodes tie and the fixed
order packs them, which is how the artifact reaches the paper's allocation ratios (on the openb
gpushare100 list, 86.8% at 130% demand against 79.4% with the exact delta, seed 42).
``artifact_scores=False`` keeps the exact float delta, in GPUs, and the exact best GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from phalanx.policies.scoring.fgd_kernels import best_share, expected_fragmentation, share_options
from phalanx.policies.scoring.fgd_workload import Workload
from phalanx.policies.scoring.node_state_memo import NodeStateMemo
from phalanx.policies.scoring.tie_break import TieBreaker
from phalanx.scheduler.gang import MemberRequest
from phalanx.topology.compiled import NO_PRODUCT, CompiledCluster
from phalanx.topology.model import MILLI_PER_GPU

ARTIFACT_MAX_SCORE = 100
"""kube-scheduler's ``MaxNodeScore``."""
BEFORE = "before"
"""Memo key of each node's fragmentation as it is (request shapes are tuples)."""


@dataclass(frozen=True)
class _Tables:
    """The workload compiled against one cluster's GPU models."""

    shares: np.ndarray  # int64 [S]: distinct per-GPU shares of the GPU task types
    share_index: np.ndarray  # int64 [T]: each GPU task type's share, as an index into shares
    gpus: np.ndarray  # int64 [T]
    cpu_milli: np.ndarray  # int64 [T]
    memory_mib: np.ndarray  # int64 [T]
    popularity: np.ndarray  # float64 [T]
    access: np.ndarray  # bool [products + 1, T]; last row: nodes without GPUs
    cpu_task_popularity: float  # total popularity of CPU-only task types

    def kernel_args(self) -> tuple[np.ndarray | float, ...]:
        return (
            self.shares,
            self.share_index,
            self.gpus,
            self.cpu_milli,
            self.memory_mib,
            self.popularity,
            self.access,
            self.cpu_task_popularity,
        )


def compile_workload(workload: Workload, products: list[str]) -> _Tables:
    gpu_tasks = [(t, p) for t, p in zip(workload.tasks, workload.popularity, strict=True) if t.gpus]
    shares = np.array(sorted({t.gpu_milli for t, _ in gpu_tasks}), dtype=np.int64)
    access = np.zeros((len(products) + 1, len(gpu_tasks)), dtype=bool)
    for j, (t, _) in enumerate(gpu_tasks):
        for i, product in enumerate(products):
            access[i, j] = not t.products or product in t.products
    return _Tables(
        shares=shares,
        share_index=np.searchsorted(shares, [t.gpu_milli for t, _ in gpu_tasks]).astype(np.int64),
        gpus=np.array([t.gpus for t, _ in gpu_tasks], dtype=np.int64),
        cpu_milli=np.array([t.cpu_milli for t, _ in gpu_tasks], dtype=np.int64),
        memory_mib=np.array([t.memory_mib for t, _ in gpu_tasks], dtype=np.int64),
        popularity=np.array([p for _, p in gpu_tasks], dtype=np.float64),
        access=access,
        cpu_task_popularity=float(
            sum(p for t, p in zip(workload.tasks, workload.popularity, strict=True) if not t.gpus)
        ),
    )


class FgdScorer:
    name = "fgd"
    description = "Fragmentation gradient descent (ATC'23): least growth of expected fragmentation."

    def __init__(
        self, workload: Workload | None = None, artifact_scores: bool = True, seed: int = 0
    ) -> None:
        self.workload = workload if workload is not None else Workload.default()
        self.artifact_scores = artifact_scores
        self.tie_breaker = TieBreaker(seed)
        self._tables: _Tables | None = None
        self._tables_for: list[str] | None = None
        self._memo: NodeStateMemo | None = None

    def tables(self, compiled: CompiledCluster) -> _Tables:
        if self._tables is None or self._tables_for is not compiled.products:
            self._tables = compile_workload(self.workload, compiled.products)
            self._tables_for = compiled.products
            self._memo = None
        return self._tables

    def _observed(
        self, compiled: CompiledCluster, nodes: np.ndarray
    ) -> tuple[NodeStateMemo, tuple[np.ndarray, ...], tuple]:
        """The memo (for this cluster's tables and shape) with ``nodes`` observed as they
        are, their state arrays, and the kernels' workload arguments."""
        args = self.tables(compiled).kernel_args()
        shape = compiled.gpu_used_milli.shape
        if self._memo is None or self._memo.shape != shape:
            self._memo = NodeStateMemo(*shape)
        state = _node_arrays(compiled, nodes)
        self._memo.observe(nodes, *state)
        return self._memo, state, args

    def node_fragmentation(self, compiled: CompiledCluster, nodes: np.ndarray) -> np.ndarray:
        """Expected fragmented milli-GPU of ``nodes`` as they are now."""
        nodes = np.asarray(nodes, dtype=np.int64)
        return self._before(nodes, *self._observed(compiled, nodes))

    @staticmethod
    def _before(
        nodes: np.ndarray, memo: NodeStateMemo, state: tuple[np.ndarray, ...], args: tuple
    ) -> np.ndarray:
        free, cpu, mem, row = state
        return memo.values(
            BEFORE, nodes, lambda s: expected_fragmentation(free[s], cpu[s], mem[s], row[s], *args)
        )

    def score(
        self, compiled: CompiledCluster, request: MemberRequest, nodes: np.ndarray
    ) -> np.ndarray:
        """Every node's value is remembered until its state changes (:class:`NodeStateMemo`):
        a placement changes one node, so most of a pod's scores are the last pod's."""
        nodes = np.asarray(nodes, dtype=np.int64)
        memo, state, args = self._observed(compiled, nodes)
        before = self._before(nodes, memo, state, args)
        free, cpu, mem, row = state
        cpu, mem = cpu - request.cpu_milli, mem - request.memory_mib
        shape = (
            request.is_fractional,
            request.gpus,
            request.gpu_milli,
            request.cpu_milli,
            request.memory_mib,
        )
        if request.is_fractional:

            def after_of(s: np.ndarray) -> np.ndarray:
                return best_share(free[s], cpu[s], mem[s], row[s], request.gpu_milli, *args)[0]
        else:

            def after_of(s: np.ndarray) -> np.ndarray:
                taken = _take_whole(free[s], request.gpus)
                return expected_fragmentation(taken, cpu[s], mem[s], row[s], *args)

        delta_milli = before - memo.values(shape, nodes, after_of)
        if not self.artifact_scores:
            return delta_milli / MILLI_PER_GPU
        return self.tie_breaker.integer_scores(compiled, nodes, artifact_points(delta_milli))

    def pick_gpu(self, compiled: CompiledCluster, request: MemberRequest, node: int) -> int | None:
        if not request.is_fractional:
            return None
        args = self.tables(compiled).kernel_args()
        free, cpu, mem, row = _node_arrays(compiled, np.array([node], dtype=np.int64))
        cpu_after, mem_after = cpu - request.cpu_milli, mem - request.memory_mib
        if not self.artifact_scores:
            _, gpu = best_share(free, cpu_after, mem_after, row, request.gpu_milli, *args)
            return int(gpu[0]) if gpu[0] >= 0 else None
        after = share_options(free[0], cpu_after[0], mem_after[0], row[0], request.gpu_milli, *args)
        fits = np.flatnonzero(np.isfinite(after))
        if fits.size == 0:
            return None
        before = expected_fragmentation(free, cpu, mem, row, *args)[0]
        return int(fits[np.argmax(artifact_points(before - after[fits]))])


def artifact_points(delta_milli: np.ndarray) -> np.ndarray:
    """The artifact's integer score for a fall of ``delta_milli`` in expected fragmentation."""
    sigmoid = 1.0 / (1.0 + np.exp(-np.asarray(delta_milli, dtype=np.float64) / MILLI_PER_GPU))
    return np.floor(ARTIFACT_MAX_SCORE * sigmoid)


def _node_arrays(
    compiled: CompiledCluster, nodes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    free = MILLI_PER_GPU - compiled.gpu_used_milli[nodes].astype(np.int64)
    product = compiled.node_product[nodes].astype(np.int64)
    row = np.where(product == NO_PRODUCT, len(compiled.products), product)
    return (
        free,
        compiled.cpu_free_milli[nodes].astype(np.int64),
        compiled.memory_free_mib[nodes].astype(np.int64),
        row,
    )


def _take_whole(free: np.ndarray, count: int) -> np.ndarray:
    """Free milli after taking ``count`` wholly free GPUs of each row (which ones does not
    matter: fragmentation depends only on the multiset of free amounts)."""
    if count == 0:
        return free
    whole = free == MILLI_PER_GPU
    taken = whole & (np.cumsum(whole, axis=1) <= count)
    return np.where(taken, 0, free)
