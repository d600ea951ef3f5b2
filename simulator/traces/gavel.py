"""Gavel (Narayanan et al., OSDI '20) job traces.

Tab-separated, no header, in two layouts told apart by their field count:

- 7 fields (``msr/seed=N/<vc>.trace.gz``, Philly-derived, one file per virtual cluster):
  ``job_type, command, num_steps_arg, needs_data_dir, total_steps, arrival_time, scale_factor``;
- 10 fields (``physical_cluster/*.trace``): ``job_type, command, working_directory,
  num_steps_arg, needs_data_dir, total_steps, scale_factor, priority_weight, SLO,
  arrival_time``.

The ``command`` field is opaque text and is never run. A job's duration is
``total_steps / throughput`` with Gavel's measured isolated throughput (steps/s) of its job type
and GPU count on ``worker_type`` from ``simulation_throughputs.json.gz``. For a GPU count the
table lacks (it has 1, 2, 4, 8 at most) the nearest smaller measured count is scaled linearly, an
optimistic assumption noted in the workload. A folder loads every trace in it, each file's stem
(the virtual cluster) as the tenant.
"""

from __future__ import annotations

import ast
import gzip
import json
from pathlib import Path

from phalanx.simulator.job import Job, TraceError, TraceWorkload
from phalanx.simulator.traces.rows import (
    JobCollector,
    Row,
    RowError,
    RowReader,
    open_text,
    text_errors,
)

MSR_FIELDS = (
    "job_type",
    "command",
    "num_steps_arg",
    "needs_data_dir",
    "total_steps",
    "arrival_time",
    "scale_factor",
)
PHYSICAL_FIELDS = (
    "job_type",
    "command",
    "working_directory",
    "num_steps_arg",
    "needs_data_dir",
    "total_steps",
    "scale_factor",
    "priority_weight",
    "SLO",
    "arrival_time",
)
THROUGHPUTS_FILE = "simulation_throughputs.json.gz"
DEFAULT_WORKER_TYPE = "v100"
ISOLATED_KEY = "null"
SEARCH_PARENTS = 3
TRACE_GLOBS = ("*.trace", "*.trace.gz")


class ThroughputTable:
    """Isolated steps/s by (job type, GPU count) for one worker type."""

    def __init__(self, path: Path, worker_type: str):
        try:
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, json.JSONDecodeError) as err:
            raise TraceError(str(path), f"cannot read throughput table: {err}") from None
        if worker_type not in data:
            raise TraceError(
                str(path), f"no worker type {worker_type!r}; the table has {sorted(data)}"
            )
        self.path = path
        self.by_type: dict[str, dict[int, float]] = {}
        for key, entry in data[worker_type].items():
            job_type, scale = ast.literal_eval(key)
            self.by_type.setdefault(job_type, {})[int(scale)] = float(entry[ISOLATED_KEY])

    def steps_per_s(self, job_type: str, gpus: int) -> tuple[float, bool]:
        """Throughput and whether it was extrapolated from a smaller measured GPU count."""
        measured = self.by_type.get(job_type)
        if not measured:
            raise RowError("job_type", "has no throughput in the table", job_type)
        if gpus in measured:
            return measured[gpus], False
        smaller = [n for n in measured if n <= gpus]
        if not smaller:
            raise RowError("scale_factor", "is below every measured GPU count", str(gpus))
        base = max(smaller)
        return measured[base] * gpus / base, True


def find_throughputs(start: Path) -> Path:
    here = start if start.is_dir() else start.parent
    for folder in [here, *here.parents][: SEARCH_PARENTS + 1]:
        candidate = folder / THROUGHPUTS_FILE
        if candidate.is_file():
            return candidate
    raise TraceError(
        str(start),
        f"no {THROUGHPUTS_FILE} found here or in the {SEARCH_PARENTS} folders above; "
        "it gives each job type's speed, needed to turn steps into seconds",
    )


def trace_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted({p for pattern in TRACE_GLOBS for p in path.glob(pattern)})
        if not files:
            raise TraceError(str(path), "no *.trace or *.trace.gz files in this folder")
        return files
    if not path.exists():
        raise TraceError(str(path), "no such file")
    return [path]


def _layout(path: Path) -> tuple[str, ...]:
    with text_errors(path), open_text(path) as handle:
        for line in handle:
            if line.strip():
                width = len(line.rstrip("\n").split("\t"))
                if width == len(MSR_FIELDS):
                    return MSR_FIELDS
                if width == len(PHYSICAL_FIELDS):
                    return PHYSICAL_FIELDS
                raise TraceError(
                    str(path),
                    f"has {width} tab-separated fields; Gavel traces have "
                    f"{len(MSR_FIELDS)} or {len(PHYSICAL_FIELDS)}",
                    line=1,
                )
    raise TraceError(str(path), "file is empty")


def load_gavel(
    path: Path,
    *,
    worker_type: str = DEFAULT_WORKER_TYPE,
    throughputs: Path | None = None,
    strict: bool = False,
) -> TraceWorkload:
    files = trace_files(path)
    table = ThroughputTable(throughputs or find_throughputs(path), worker_type)
    collector = JobCollector(strict=strict)
    extrapolated = 0

    for file in files:
        tenant = file.name.split(".")[0]
        fields = _layout(file)

        def make(row: Row, where: str, tenant: str = tenant) -> Job:
            nonlocal extrapolated
            job_type = row.text("job_type")
            gpus = row.integer("scale_factor")
            if gpus < 1:
                raise RowError("scale_factor", "must be at least 1")
            speed, guessed = table.steps_per_s(job_type, gpus)
            extrapolated += guessed
            steps = row.number("total_steps")
            weight = row.number("priority_weight", default=1.0)
            return Job(
                name=f"{tenant}-{row.line:05d}",
                submit_time_s=row.number("arrival_time"),
                duration_s=steps / speed,
                gpus=gpus,
                tenant=tenant,
                priority=round(weight),
                job_class=job_type,
                source=where,
            )

        reader = RowReader(file, fields, delimiter="\t", fieldnames=fields)
        collector.add_rows(reader, make)

    notes = [f"durations = total_steps / isolated {worker_type} throughput ({table.path.name})"]
    if extrapolated:
        notes.append(
            f"{extrapolated} jobs use more GPUs than Gavel measured; their throughput is "
            "scaled linearly from the largest measured count"
        )
    return TraceWorkload(
        name=path.name.split(".")[0],
        jobs=collector.jobs,
        source=str(path),
        skipped=collector.skipped,
        notes=notes,
    )
