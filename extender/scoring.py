"""Prioritize scores for nodes other than a member's planned one, from the shared placement cost.

kube-scheduler adds ``score x weight x 10`` to its own plugin scores; the planned node gets the
top score (10) and every other node a lower one, so its own scoring cannot pull a member away.
How much lower follows :func:`scheduler.cost.placement_cost` of the gang with this member moved
to that node. Pricing every candidate separately would call the cost once per node; nodes that
look the same to the cost (same lowest common level with the rest of the gang, same node
shape, same free GPU count) are priced once through a representative.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from phalanx.extender.wire import MAX_EXTENDER_PRIORITY, MIN_EXTENDER_PRIORITY
from phalanx.scheduler.cluster_index import cluster_index
from phalanx.scheduler.cost import placement_cost
from phalanx.scheduler.eligibility import static_mask
from phalanx.scheduler.gang import Gang
from phalanx.scheduler.gpu_choice import choose_fractional_gpu, choose_whole_gpus
from phalanx.scheduler.placement import MemberPlacement, Placement
from phalanx.topology.compiled import CompiledCluster
from phalanx.topology.model import MILLI_PER_GPU

ALTERNATIVE_TOP = MAX_EXTENDER_PRIORITY - 1
"""Best score a node other than the planned one can get."""


def alternative_scores(
    compiled: CompiledCluster,
    gang: Gang,
    placement: Placement,
    member: MemberPlacement,
    candidates: np.ndarray,
) -> np.ndarray:
    """int64 scores aligned with ``candidates`` (node indices): 0 where the member does not
    fit, else ``ALTERNATIVE_TOP`` for the cheapest alternative down to 0 for the dearest."""
    scores = np.zeros(candidates.size, dtype=np.int64)
    request = next((m.request for m in gang.members if m.name == member.member), None)
    fits = candidates != member.node_index
    if request is None or not fits.any():
        return scores
    others = [m for m in placement.members if m.member != member.member]
    # The candidates exclude the member's own node, so releasing its reservation changes no
    # candidate's row: fit, class and GPU choice read the live arrays. Only the cost, which
    # also reads the member's node and the per-domain free counts, is priced on a what-if
    # copy without that reservation (never by changing the live ledger).
    fits &= _fits(compiled, request, candidates)
    nodes = candidates[fits]
    if nodes.size == 0:
        return scores
    what_if = compiled.copy()
    what_if.release(
        member.node_index, member.gpus, member.gpu_milli, member.cpu_milli, member.memory_mib
    )
    classes, inverse = np.unique(_class_keys(compiled, nodes, others), return_inverse=True)
    costs = np.empty(classes.size)
    for c in range(classes.size):
        rep = int(nodes[np.argmax(inverse == c)])
        moved = _moved(compiled, member, request, rep)
        costs[c] = placement_cost(what_if, gang, [*others, moved]).total
    lo, hi = float(costs.min()), float(costs.max())
    if hi > lo:
        class_scores = np.rint(ALTERNATIVE_TOP * (hi - costs) / (hi - lo)).astype(np.int64)
    else:
        class_scores = np.full(classes.size, ALTERNATIVE_TOP, dtype=np.int64)
    scores[np.flatnonzero(fits)] = np.clip(
        class_scores[inverse], MIN_EXTENDER_PRIORITY, ALTERNATIVE_TOP
    )
    return scores


def _fits(compiled: CompiledCluster, request, nodes: np.ndarray) -> np.ndarray:
    ok = static_mask(compiled, cluster_index(compiled), request)[nodes].copy()
    ok &= compiled.cpu_free_milli[nodes] >= request.cpu_milli
    ok &= compiled.memory_free_mib[nodes] >= request.memory_mib
    if request.is_fractional:
        room = compiled.gpu_usable[nodes] & (
            compiled.gpu_used_milli[nodes] + request.gpu_milli <= MILLI_PER_GPU
        )
        ok &= room.any(axis=1)
    else:
        ok &= compiled.free_gpu_count[nodes] >= request.gpus
    return ok


def _class_keys(
    compiled: CompiledCluster, nodes: np.ndarray, others: list[MemberPlacement]
) -> np.ndarray:
    """One int64 per node: (lowest level shared with every other member, shape, free GPUs)."""
    if others:
        other_nodes = np.unique([m.node_index for m in others])
        doms = compiled.node_domain[:, nodes]
        other_doms = compiled.node_domain[:, other_nodes]
        together = (doms[:, :, None] == other_doms[:, None, :]).all(axis=2)
        level = np.argmax(together, axis=0).astype(np.int64)
    else:
        level = np.zeros(nodes.size, dtype=np.int64)
    n_shapes = int(compiled.shape_pair_cost.shape[0])
    width = compiled.max_gpus + 1
    shape = compiled.node_shape[nodes].astype(np.int64)
    free = compiled.free_gpu_count[nodes].astype(np.int64)
    return (level * n_shapes + shape) * width + free


def _moved(
    compiled: CompiledCluster, member: MemberPlacement, request, node: int
) -> MemberPlacement:
    if request.is_fractional:
        gpu = choose_fractional_gpu(
            compiled.gpu_used_milli[node], compiled.gpu_usable[node], request.gpu_milli
        )
        gpus: tuple[int, ...] = (gpu,)
    elif request.gpus:
        index = cluster_index(compiled)
        gpus = choose_whole_gpus(
            index, int(index.choice_shape[node]), int(compiled.free_gpu_mask[node]), request.gpus
        )
    else:
        gpus = ()
    return replace(member, node=compiled.node_names[node], node_index=node, gpus=gpus)
