"""Numba kernels for FGD's expected fragmentation.

A numpy version needs ``[states, shares, gpus]`` temporaries; fused into one loop the
evaluation of every (node, GPU) choice for a share on the 1,213-node openb cluster takes about
0.45 ms instead of 5.8 ms (measured on the same states, see docs/policies.md), which is what
makes the FGD table reproducible in minutes. ``cache=True`` keeps the compile cost to the
first run on a machine.

Arguments shared by the kernels (see :class:`policies.scoring.fgd._Tables`): ``shares`` the
distinct per-GPU shares of the GPU task types, ``share_index``/``gpus``/``cpu_milli``/
``memory_mib``/``popularity`` per GPU task type, ``access[product_row, task]``, and the total
popularity of CPU-only task types.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def state_fragmentation(
    free: np.ndarray,
    cpu_free: int,
    memory_free: int,
    product_row: int,
    shares: np.ndarray,
    share_index: np.ndarray,
    gpus: np.ndarray,
    cpu_milli: np.ndarray,
    memory_mib: np.ndarray,
    popularity: np.ndarray,
    access: np.ndarray,
    cpu_task_popularity: float,
    room: np.ndarray,
    stranded: np.ndarray,
) -> float:
    """Expected fragmented milli-GPU of one node state (``room``/``stranded``: scratch of
    length ``len(shares)``)."""
    total = 0
    for g in range(free.size):
        total += free[g]
    for j in range(shares.size):
        count = 0
        lost = 0
        for g in range(free.size):
            if free[g] >= shares[j]:
                count += 1
            else:
                lost += free[g]
        room[j] = count
        stranded[j] = lost
    frag = total * cpu_task_popularity
    for t in range(gpus.size):
        j = share_index[t]
        if (
            room[j] >= gpus[t]
            and cpu_free >= cpu_milli[t]
            and memory_free >= memory_mib[t]
            and access[product_row, t]
        ):
            frag += popularity[t] * stranded[j]
        else:
            frag += popularity[t] * total
    return frag


@njit(cache=True)
def expected_fragmentation(
    free: np.ndarray,
    cpu_free: np.ndarray,
    memory_free: np.ndarray,
    product_row: np.ndarray,
    shares: np.ndarray,
    share_index: np.ndarray,
    gpus: np.ndarray,
    cpu_milli: np.ndarray,
    memory_mib: np.ndarray,
    popularity: np.ndarray,
    access: np.ndarray,
    cpu_task_popularity: float,
) -> np.ndarray:
    """Expected fragmented milli-GPU of each row of ``free`` (``[states, gpus]``)."""
    out = np.empty(free.shape[0])
    room = np.empty(shares.size, dtype=np.int64)
    stranded = np.empty(shares.size, dtype=np.int64)
    for s in range(free.shape[0]):
        out[s] = state_fragmentation(
            free[s], cpu_free[s], memory_free[s], product_row[s], shares, share_index, gpus,
            cpu_milli, memory_mib, popularity, access, cpu_task_popularity, room, stranded,
        )  # fmt: skip
    return out


@njit(cache=True)
def share_fragmentation(
    free: np.ndarray,
    cpu_free: int,
    memory_free: int,
    product_row: int,
    share_milli: int,
    shares: np.ndarray,
    share_index: np.ndarray,
    gpus: np.ndarray,
    cpu_milli: np.ndarray,
    memory_mib: np.ndarray,
    popularity: np.ndarray,
    access: np.ndarray,
    cpu_task_popularity: float,
    room: np.ndarray,
    stranded: np.ndarray,
    out: np.ndarray,
) -> None:
    """Into ``out`` (one slot per GPU): the expected fragmentation of one node state after a
    ``share_milli`` share lands on that GPU, ``inf`` where it has no room. ``free`` is left
    as it was; ``cpu_free``/``memory_free`` are already net of the share's request."""
    for g in range(free.size):
        if free[g] < share_milli:
            out[g] = np.inf
            continue
        free[g] -= share_milli
        out[g] = state_fragmentation(
            free, cpu_free, memory_free, product_row, shares, share_index, gpus, cpu_milli,
            memory_mib, popularity, access, cpu_task_popularity, room, stranded,
        )  # fmt: skip
        free[g] += share_milli


@njit(cache=True)
def share_options(
    free: np.ndarray,
    cpu_free: int,
    memory_free: int,
    product_row: int,
    share_milli: int,
    shares: np.ndarray,
    share_index: np.ndarray,
    gpus: np.ndarray,
    cpu_milli: np.ndarray,
    memory_mib: np.ndarray,
    popularity: np.ndarray,
    access: np.ndarray,
    cpu_task_popularity: float,
) -> np.ndarray:
    """Per GPU of one node (``free`` is its row): expected fragmentation once the share lands
    there, ``inf`` where it does not fit."""
    out = np.empty(free.size)
    share_fragmentation(
        free.copy(), cpu_free, memory_free, product_row, share_milli, shares, share_index, gpus,
        cpu_milli, memory_mib, popularity, access, cpu_task_popularity,
        np.empty(shares.size, dtype=np.int64), np.empty(shares.size, dtype=np.int64), out,
    )  # fmt: skip
    return out


@njit(cache=True)
def best_share(
    free: np.ndarray,
    cpu_free: np.ndarray,
    memory_free: np.ndarray,
    product_row: np.ndarray,
    share_milli: int,
    shares: np.ndarray,
    share_index: np.ndarray,
    gpus: np.ndarray,
    cpu_milli: np.ndarray,
    memory_mib: np.ndarray,
    popularity: np.ndarray,
    access: np.ndarray,
    cpu_task_popularity: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Per node: the least expected fragmentation reachable by putting a ``share_milli``
    share on one of its GPUs, and that GPU (lowest index on ties); ``inf`` and -1 where no
    GPU has room. ``cpu_free``/``memory_free`` are already net of the share's request."""
    n = free.shape[0]
    best = np.full(n, np.inf)
    best_gpu = np.full(n, -1, dtype=np.int64)
    room = np.empty(shares.size, dtype=np.int64)
    stranded = np.empty(shares.size, dtype=np.int64)
    row = np.empty(free.shape[1], dtype=free.dtype)
    options = np.empty(free.shape[1])
    for s in range(n):
        for g in range(free.shape[1]):
            row[g] = free[s, g]
        share_fragmentation(
            row, cpu_free[s], memory_free[s], product_row[s], share_milli, shares, share_index,
            gpus, cpu_milli, memory_mib, popularity, access, cpu_task_popularity, room, stranded,
            options,
        )  # fmt: skip
        for g in range(free.shape[1]):
            if options[g] < best[s]:
                best[s] = options[g]
                best_gpu[s] = g
    return best, best_gpu
