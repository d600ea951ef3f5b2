"""Microsoft Philly 2017 job summary (Jeon et al., ATC '19; the file Pollux derived from it).

Columns: ``timestamp`` (``YYYY-MM-DD HH:MM:SS`` submission), ``duration`` (s), ``num_gpus``,
``gpu_time``, ``cluster`` (the virtual cluster, our tenant). Rows are not in time order;
submit times are seconds after the earliest timestamp in the file.

The trace carries no machine list; its cluster is ``PHILLY_NODES`` 8-GPU hosts, the node
count the Helios authors used for Philly (``philly_vc_node_counts.csv``, 352 nodes). When
that file sits next to the jobs, each virtual cluster's node share is its guarantee.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from phalanx.simulator.job import Job, TraceError, TraceWorkload
from phalanx.simulator.traces.rows import JobCollector, Row, RowError, RowReader
from phalanx.topology.model import Cluster, Gpu, Nic, Node, NvlinkKind
from phalanx.topology.presets import rail_fat_tree

COLUMNS = ("timestamp", "duration", "num_gpus", "cluster")
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
VC_TABLE = "philly_vc_node_counts.csv"
JOBS_GLOB = "philly_jobs_*.csv*"

PHILLY_NODES = 352
PHILLY_GPUS_PER_NODE = 8
PHILLY_GPU_PRODUCT = "Philly-24GB"
"""The raw release's machine list shows 8-GPU servers with 24 GB GPUs (``m31,8, 24GB``)."""
PHILLY_GPU_MEMORY_MIB = 24 * 1024
PHILLY_CPU_MILLI = 48_000
PHILLY_MEMORY_MIB = 256 * 1024
PHILLY_NIC_GBIT_S = 100.0
"""ATC '19: servers joined by 100 Gb/s InfiniBand, one NIC per server."""
PHILLY_RACK_NODES = 32
PHILLY_PCIE_GENERATION = 4
"""Gen3 hosts; the cost table's slowest generation is Gen4."""


def jobs_path(path: Path) -> Path:
    if path.is_dir():
        found = sorted(path.glob(JOBS_GLOB))
        if not found:
            raise TraceError(str(path), f"no Philly jobs file ({JOBS_GLOB}) in this folder")
        return found[0]
    return path


def philly_node(name: str) -> Node:
    gpus = tuple(
        Gpu(
            g,
            f"GPU-{name}-{g}",
            PHILLY_GPU_PRODUCT,
            PHILLY_GPU_MEMORY_MIB,
            numa_node=g // (PHILLY_GPUS_PER_NODE // 2),
            pcie_switch=g // 2,
        )
        for g in range(PHILLY_GPUS_PER_NODE)
    )
    return Node(
        name,
        gpus,
        cpu_milli=PHILLY_CPU_MILLI,
        memory_mib=PHILLY_MEMORY_MIB,
        nvlink=NvlinkKind.NONE,
        pcie_generation=PHILLY_PCIE_GENERATION,
        nics=(Nic("ib0", PHILLY_NIC_GBIT_S),),
        network_gbps_per_gpu=PHILLY_NIC_GBIT_S / 8 / PHILLY_GPUS_PER_NODE,
    )


def philly_cluster(nodes: int = PHILLY_NODES) -> Cluster:
    members = [philly_node(f"philly-{i:04d}") for i in range(nodes)]
    return Cluster(f"philly:{nodes}", members, rail_fat_tree(members, PHILLY_RACK_NODES))


def load_philly(path: Path, *, strict: bool = False) -> TraceWorkload:
    source = jobs_path(path)
    collector = JobCollector(strict=strict)

    def make(row: Row, where: str) -> Job:
        stamp = row.text("timestamp")
        try:
            parsed = datetime.fromisoformat(stamp)
        except ValueError:
            raise RowError("timestamp", f"is not {TIMESTAMP_FORMAT}", stamp) from None
        # Cluster-local wall time read as UTC: differences stay exact across DST changes.
        submitted = parsed.replace(tzinfo=UTC).timestamp()
        return Job(
            name=f"philly-{row.line - 1:06d}",
            submit_time_s=submitted,
            duration_s=row.number("duration"),
            gpus=row.integer("num_gpus"),
            tenant=row.text("cluster"),
            source=where,
        )

    collector.add_rows(RowReader(source, COLUMNS), make)
    jobs = collector.jobs
    if jobs:
        origin = min(j.submit_time_s for j in jobs)
        jobs = [replace(j, submit_time_s=j.submit_time_s - origin) for j in jobs]
    jobs = [j for j in jobs if _has_gpus(j, collector)]
    guarantees = _vc_guarantees(source.parent / VC_TABLE)
    return TraceWorkload(
        name=source.name.split(".")[0],
        jobs=jobs,
        source=str(source),
        cluster=philly_cluster(),
        skipped=collector.skipped,
        tenant_guarantees=guarantees,
        notes=["submit times relative to the first job; rows re-sorted by time"],
        cluster_notes=[
            f"cluster: {PHILLY_NODES} 8-GPU PCIe hosts, one {PHILLY_NIC_GBIT_S:.0f}G NIC each"
        ],
    )


def _has_gpus(job: Job, collector: JobCollector) -> bool:
    if job.gpus > 0:
        return True
    collector.skip("job asks for no GPU", job.source)
    return False


def _vc_guarantees(path: Path) -> dict[str, float]:
    """Virtual cluster -> share of the cluster's nodes, from the Helios VC table."""
    if not path.is_file():
        return {}
    counts: dict[str, int] = {}
    for row in RowReader(path, ("vc", "node num")):
        try:
            counts[row.text("vc")] = row.integer("node num")
        except RowError as err:
            raise TraceError(str(path), str(err), line=row.line, field=err.field) from None
    total = sum(counts.values())
    return {vc: n / total for vc, n in counts.items()} if total else {}
