"""Alibaba GPU cluster trace 2023 ("openb", Weng et al., FGD, USENIX ATC '23).

The folder holds node lists (``openb_node_list_*.csv``: ``sn,cpu_milli,memory_mib,gpu,model``)
and pod lists (``openb_pod_list_*.csv``: ``name,cpu_milli,memory_mib,num_gpu,gpu_milli`` and,
in most lists, ``gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time``).

Each pod is one job of one pod. ``num_gpu == 1`` with ``gpu_milli < 1000`` is a GPU share;
``num_gpu == 0`` is a CPU-only pod; ``gpu_spec`` lists the GPU models the pod accepts.
The FGD paper does not replay the times: it fills the cluster by sampling pods (see
:mod:`simulator.fill`); ``replay=True`` uses ``creation_time`` and ``deletion_time`` instead.
"""

from __future__ import annotations

import math
from pathlib import Path

from phalanx.simulator.job import Job, TraceError, TraceWorkload
from phalanx.simulator.traces.rows import JobCollector, Row, RowError, RowReader, text_errors
from phalanx.topology.costs import COST_SAME_SPINE
from phalanx.topology.model import (
    CLUSTER_LEVEL,
    MILLI_PER_GPU,
    Cluster,
    FabricLevel,
    Gpu,
    Node,
    NvlinkKind,
)

DEFAULT_NODE_LIST = "gpu_node"
"""The FGD experiments use the 1,213 GPU nodes (6,212 GPUs); ``all_node`` adds 310 CPU nodes."""
DEFAULT_POD_LIST = "default"
NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
POD_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")
TIME_COLUMNS = ("creation_time", "deletion_time")

GIB_IN_MIB = 1024
GPU_MEMORY_MIB = {
    "T4": 16 * GIB_IN_MIB,
    "P100": 16 * GIB_IN_MIB,
    "V100M16": 16 * GIB_IN_MIB,
    "V100M32": 32 * GIB_IN_MIB,
    "A10": 24 * GIB_IN_MIB,
}
"""Public memory sizes of the disclosed models; G1/G2/G3 are undisclosed (0 = unknown)."""
OPENB_PCIE_GENERATION = 4
"""T4/P100/V100 hosts are PCIe Gen3; the cost table's slowest generation is Gen4, the nearest."""
GPUS_PER_PCIE_SWITCH = 2


def node_list_path(folder: Path, name: str) -> Path:
    return _list_path(folder, "node", name)


def pod_list_path(folder: Path, name: str) -> Path:
    return _list_path(folder, "pod", name)


def _list_path(folder: Path, kind: str, name: str) -> Path:
    """``default``, ``openb_pod_list_default`` and ``openb_pod_list_default.csv`` all work;
    the lists may sit in the folder itself or in its ``csv/`` subfolder."""
    if not folder.is_dir():
        raise TraceError(str(folder), "is not a folder; give the folder holding the openb lists")
    stem = name.removesuffix(".csv")
    if not stem.startswith(f"openb_{kind}_list_"):
        stem = f"openb_{kind}_list_{stem}"
    for candidate in (folder / f"{stem}.csv", folder / "csv" / f"{stem}.csv"):
        if candidate.is_file():
            return candidate
    found = sorted(
        p.stem.removeprefix(f"openb_{kind}_list_")
        for p in [
            *folder.glob(f"openb_{kind}_list_*.csv"),
            *folder.glob(f"csv/openb_{kind}_list_*.csv"),
        ]
    )
    raise TraceError(str(folder / f"{stem}.csv"), f"no such {kind} list; found {found}")


def pcie_node(name: str, product: str, gpus: int, cpu_milli: int, memory_mib: int) -> Node:
    """A PCIe-only host: GPUs in pairs behind PCIe switches, split over two sockets when the
    node has four or more (the usual 2-socket layout); no NVLink is assumed."""
    sockets = 2 if gpus >= 4 else 1
    per_socket = max(1, gpus // sockets)
    memory = GPU_MEMORY_MIB.get(product, 0)
    devices = tuple(
        Gpu(
            g,
            f"GPU-{name}-{g}",
            product,
            memory,
            numa_node=min(g // per_socket, sockets - 1),
            pcie_switch=g // GPUS_PER_PCIE_SWITCH,
        )
        for g in range(gpus)
    )
    return Node(
        name,
        devices,
        cpu_milli=cpu_milli,
        memory_mib=memory_mib,
        nvlink=NvlinkKind.NONE,
        pcie_generation=OPENB_PCIE_GENERATION,
        domains={CLUSTER_LEVEL: CLUSTER_LEVEL},
    )


def flat_cluster(name: str, nodes: list[Node]) -> Cluster:
    """One flat fabric level over all nodes (the trace says nothing about the network)."""
    for node in nodes:
        node.domains.setdefault(CLUSTER_LEVEL, CLUSTER_LEVEL)
    return Cluster(name, nodes, [FabricLevel(CLUSTER_LEVEL, cost=COST_SAME_SPINE)])


def load_openb_cluster(folder: Path, node_list: str = DEFAULT_NODE_LIST) -> Cluster:
    return cluster_from_node_list(node_list_path(folder, node_list))


def cluster_from_node_list(path: Path) -> Cluster:
    """An openb-style node list (``sn,cpu_milli,memory_mib,gpu,model``) as a cluster."""
    nodes: list[Node] = []
    seen: set[str] = set()
    for row in RowReader(path, NODE_COLUMNS):
        if "__width__" in row.values:
            raise TraceError(str(path), "row width differs from the header", line=row.line)
        try:
            name = row.text("sn")
            gpus = row.integer("gpu")
            product = row.text("model", default="")
            cpu_milli = row.integer("cpu_milli")
            memory_mib = row.integer("memory_mib")
            if gpus < 0 or cpu_milli < 0 or memory_mib < 0:
                raise RowError(None, "capacities must not be negative")
            if gpus and not product:
                raise RowError("model", "is empty for a node with GPUs")
            if name in seen:
                raise RowError("sn", "repeats an earlier node name", name)
        except RowError as err:
            raise TraceError(str(path), str(err), line=row.line, field=err.field) from None
        seen.add(name)
        nodes.append(pcie_node(name, product, gpus, cpu_milli, memory_mib))
    if not nodes:
        raise TraceError(str(path), "node list has no nodes")
    name = path.stem.replace("openb_node_list_", "openb-", 1)
    return flat_cluster(name, nodes)


def load_openb(
    folder: Path,
    pod_list: str = DEFAULT_POD_LIST,
    *,
    node_list: str = DEFAULT_NODE_LIST,
    replay: bool = False,
    strict: bool = False,
) -> TraceWorkload:
    """Pods of one list as jobs, with the trace's node list as the cluster.

    Without ``replay`` submit times are the row order and durations infinite (the fill
    protocol ignores both); with it they come from ``creation_time`` and ``deletion_time``.
    """
    path = pod_list_path(folder, pod_list)
    collector = JobCollector(strict=strict)
    reader = RowReader(path, POD_COLUMNS)
    has_times = _has_columns(path, TIME_COLUMNS)
    if replay and not has_times:
        raise TraceError(
            str(path),
            f"has no {list(TIME_COLUMNS)} columns to replay; use the fill protocol (--demand)",
        )
    order = iter(range(1 << 62))

    def make(row: Row, where: str) -> Job:
        num_gpu = row.integer("num_gpu")
        share = row.integer("gpu_milli", default=0)
        if num_gpu < 0 or share < 0:
            raise RowError(None, "GPU requests must not be negative")
        if num_gpu == 0:
            gpus, milli = 0, 0
        elif share >= MILLI_PER_GPU:
            gpus, milli = num_gpu, 0
        elif num_gpu == 1:
            gpus, milli = 0, share
        else:
            raise RowError("gpu_milli", "is a share (below 1000), which needs num_gpu 1")
        spec = row.text("gpu_spec", default="")
        products = tuple(sorted({p.strip() for p in spec.split("|") if p.strip()}))
        if replay:
            submit, duration = _replay_times(row)
        else:
            submit, duration = float(next(order)), math.inf
        return Job(
            name=row.text("name"),
            submit_time_s=submit,
            duration_s=duration,
            gpus=gpus,
            gpu_milli=milli,
            pods=1,
            cpu_milli=row.integer("cpu_milli"),
            memory_mib=row.integer("memory_mib"),
            gpu_products=products,
            job_class=row.text("qos", default=""),
            source=where,
        )

    collector.add_rows(reader, make)
    cluster = load_openb_cluster(folder, node_list)
    return TraceWorkload(
        name=path.stem,
        jobs=collector.jobs,
        source=str(path),
        cluster=cluster,
        skipped=collector.skipped,
        notes=["times replayed from creation/deletion" if replay else "fill protocol (FGD)"],
        cluster_notes=["openb nodes modelled as PCIe-only hosts on one flat network level"],
    )


def _replay_times(row: Row) -> tuple[float, float]:
    created = row.number("creation_time")
    deleted = row.number("deletion_time")
    if deleted <= created:
        raise RowError("deletion_time", "is not after creation_time")
    return created, deleted - created


def _has_columns(path: Path, columns: tuple[str, ...]) -> bool:
    with text_errors(path), path.open(encoding="utf-8") as handle:
        header = {h.strip() for h in handle.readline().split(",")}
    return all(c in header for c in columns)
