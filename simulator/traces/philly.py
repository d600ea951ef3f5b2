"""Microsoft Philly 2017 job summary (Jeon et al., ATC '19; the file Pollux derived from it).

Columns: ``timestamp`` (``YYYY-MM-DD HH:MM:SS`` submission), ``duration`` (s), ``num_gpus``,
``gpu_time``, ``cluster`` (the virtual cluster, our tenant). Rows are not in time order;
submit times are seconds after the earliest timestamp in the file.

The trace carries no machine list; its cluster is ``PHILLY_NODES`` 8-GPU hosts, the node
count the Helios authors used for Philly (``philly_vc_node_counts.csv``, 352 nodes). When
that file sits next to the jobs, each virtual cluster's node share is its guarantee; when the
per-minute node series does, ``--cluster philly:auto`` sizes the cluster from it
(:mod:`simulator.traces.philly_activity`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from phalanx.simulator.job import Job, TraceError, TraceWorkload
from phalanx.simulator.traces.philly_activity import NodeActivity, find_node_series
from phalanx.simulator.traces.rows import JobCollector, Row, RowError, RowReader
from phalanx.topology.model import Cluster
from phalanx.topology.presets import (
    PHILLY_NIC_GBIT_S,
    PHILLY_NODES,
    PHILLY_RACK_NODES,
    philly_host,
    rail_fat_tree,
)

COLUMNS = ("timestamp", "duration", "num_gpus", "cluster")
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
VC_TABLE = "philly_vc_node_counts.csv"
JOBS_GLOB = "philly_jobs_*.csv*"


def jobs_path(path: Path) -> Path:
    if path.is_dir():
        found = sorted(path.glob(JOBS_GLOB))
        if not found:
            raise TraceError(str(path), f"no Philly jobs file ({JOBS_GLOB}) in this folder")
        return found[0]
    return path


def philly_cluster(nodes: int = PHILLY_NODES) -> Cluster:
    # the topology preset's host (one definition for simulate, topology show, place, serve);
    # the simulator keeps its own four-digit node names, which its reports have always shown
    members = [philly_host(f"philly-{i:04d}") for i in range(nodes)]
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
    origin = 0.0
    if jobs:
        origin = min(j.submit_time_s for j in jobs)
        jobs = [replace(j, submit_time_s=j.submit_time_s - origin) for j in jobs]
    jobs = [j for j in jobs if _has_gpus(j, collector)]
    guarantees = _vc_guarantees(source.parent / VC_TABLE)
    series = find_node_series(source.parent)
    return TraceWorkload(
        name=source.name.split(".")[0],
        jobs=jobs,
        source=str(source),
        cluster=philly_cluster(),
        skipped=collector.skipped,
        tenant_guarantees=guarantees,
        node_activity=NodeActivity(series, origin) if series is not None else None,
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
