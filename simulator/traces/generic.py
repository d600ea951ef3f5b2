"""The generic job schema, for users who bring their own trace (CSV, CSV.gz or Parquet).

One row per job; see ``docs/trace-schema.md``. Required: ``name``, ``submit_time_s``,
``duration_s``. Optional: ``gpus`` (total whole GPUs), ``gpu_milli`` (a share of one GPU),
``pods`` (gang size; default: one pod per node-sized chunk), ``cpu_milli`` and ``memory_mib``
(per pod), ``gpu_model`` (accepted models joined by ``|``), ``tenant``, ``priority``,
``job_class``, ``comm_intensity`` (0..1), ``runtime_estimate_s``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from pathlib import Path

from phalanx.simulator.job import DEFAULT_TENANT, Job, TraceError, TraceWorkload
from phalanx.simulator.traces.rows import JobCollector, Row, RowReader

REQUIRED = ("name", "submit_time_s", "duration_s")
OPTIONAL = (
    "gpus",
    "gpu_milli",
    "pods",
    "cpu_milli",
    "memory_mib",
    "gpu_model",
    "tenant",
    "priority",
    "job_class",
    "comm_intensity",
    "runtime_estimate_s",
)
COLUMNS = REQUIRED + OPTIONAL
PRODUCT_SEPARATOR = "|"
PARQUET_SUFFIXES = (".parquet", ".pq")


class ParquetRows:
    """Rows of a Parquet file in the :class:`RowReader` shape (``line`` = 1-based row)."""

    def __init__(self, path: Path, required: tuple[str, ...]):
        self.path = path
        self.required = required

    def __iter__(self) -> Iterator[Row]:
        import pyarrow.parquet as pq

        if not self.path.is_file():
            raise TraceError(str(self.path), "no such file")
        try:
            table = pq.read_table(self.path)
        except Exception as err:  # pyarrow raises several unrelated types for bad files
            raise TraceError(str(self.path), f"not a readable Parquet file: {err}") from None
        missing = [c for c in self.required if c not in table.column_names]
        if missing:
            raise TraceError(
                str(self.path), f"missing column(s) {missing}; found {table.column_names}"
            )
        columns = {name: table.column(name).to_pylist() for name in table.column_names}
        for i in range(table.num_rows):
            values = {k: "" if v[i] is None else str(v[i]) for k, v in columns.items()}
            yield Row(values, i + 1)


def job_from_row(row: Row, where: str) -> Job:
    spec = row.text("gpu_model", default="")
    pods = row.values.get("pods", "").strip()
    return Job(
        name=row.text("name"),
        submit_time_s=row.number("submit_time_s"),
        duration_s=row.number("duration_s"),
        gpus=row.integer("gpus", default=0),
        gpu_milli=row.integer("gpu_milli", default=0),
        pods=row.integer("pods") if pods else None,
        cpu_milli=row.integer("cpu_milli", default=0),
        memory_mib=row.integer("memory_mib", default=0),
        gpu_products=tuple(sorted({p.strip() for p in spec.split(PRODUCT_SEPARATOR) if p.strip()})),
        tenant=row.text("tenant", default=DEFAULT_TENANT),
        priority=row.integer("priority", default=0),
        job_class=row.text("job_class", default=""),
        comm_intensity=row.optional_number("comm_intensity"),
        runtime_estimate_s=row.optional_number("runtime_estimate_s"),
        source=where,
    )


def load_generic(path: Path, *, strict: bool = False) -> TraceWorkload:
    if path.suffix in PARQUET_SUFFIXES:
        reader: RowReader | ParquetRows = ParquetRows(path, REQUIRED)
    else:
        reader = RowReader(path, REQUIRED)
    collector = JobCollector(strict=strict)
    collector.add_rows(reader, job_from_row)  # type: ignore[arg-type]
    return TraceWorkload(
        name=path.name.split(".")[0],
        jobs=collector.jobs,
        source=str(path),
        skipped=collector.skipped,
    )


def job_row(job: Job) -> dict[str, object]:
    """A job as one row of the generic schema (empty cells for defaults)."""
    return {
        "name": job.name,
        "submit_time_s": job.submit_time_s,
        "duration_s": job.duration_s,
        "gpus": job.gpus,
        "gpu_milli": job.gpu_milli,
        "pods": "" if job.pods is None else job.pods,
        "cpu_milli": job.cpu_milli,
        "memory_mib": job.memory_mib,
        "gpu_model": PRODUCT_SEPARATOR.join(job.gpu_products),
        "tenant": job.tenant,
        "priority": job.priority,
        "job_class": job.job_class,
        "comm_intensity": "" if job.comm_intensity is None else job.comm_intensity,
        "runtime_estimate_s": "" if job.runtime_estimate_s is None else job.runtime_estimate_s,
    }


def write_generic(jobs: Sequence[Job], path: Path) -> None:
    """Write jobs in the generic schema (CSV), e.g. to keep a synthetic workload."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS))
        writer.writeheader()
        for job in jobs:
            writer.writerow(job_row(job))
