"""``philly:auto``: a Philly cluster sized so that the trace's work keeps it as busy as Philly was.

Why not the trace's own 352 nodes: the job file Pollux derived from Philly's log carries about
500 GPUs of work on average (Oct 3 - Nov 30) while the per-minute node series shows about 320
of 420 nodes running jobs; on 352 8-GPU nodes the trace's jobs fill 6-13 % of the GPUs, no
queue ever forms and every queue policy gives the same result. Why not the series' active-node
count either: that is the same 320 nodes, for the same reason (most of the work that kept them
busy is not in the file).

What the series does say is how busy the real cluster was: the mean of ``active / total`` over
the minutes the run covers (about 76 %). ``philly:auto`` is the node count at which the trace's
offered load (the GPU-seconds its jobs would run inside that window on a cluster with no queue,
over the window's length) keeps the same share of 8-GPU nodes busy:

    nodes = ceil(offered GPUs / (8 x mean active fraction))

never fewer than the widest job needs. The window is the part of the jobs' submission span
that the series covers; a workload outside the series (the September jobs alone) uses the
whole series' fraction over its own span. Slicing the workload (a week, the first N jobs)
sizes the cluster for that slice.
"""

from __future__ import annotations

import csv
import gzip
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from phalanx.topology.presets import PHILLY_GPUS_PER_NODE

NODE_SERIES_GLOB = "philly_node_sequence_*.csv*"
SERIES_COLUMNS = ("time", "active", "total")
MIN_WINDOW_S = 3600.0
"""A workload submitted within less than this is treated as spread over this long."""


class NodeSeriesError(ValueError):
    """A node-activity file that cannot be read as ``time,active,total`` rows."""


@dataclass(frozen=True)
class NodeActivity:
    """Where the node series is and where the trace's time zero lies, read only on demand
    (``philly:auto``) so that ordinary Philly runs do not pay for 84,000 rows."""

    path: Path
    origin_epoch_s: float
    """The trace's time zero (its earliest submission), cluster-local time read as UTC."""

    def minutes(self) -> list[tuple[float, float]]:
        """(seconds after the trace's time zero, active / total) per row with nodes online."""
        opener = gzip.open if self.path.suffix == ".gz" else open
        rows: list[tuple[float, float]] = []
        with opener(self.path, "rt", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in SERIES_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise NodeSeriesError(f"{self.path}: missing column(s) {', '.join(missing)}")
            for line, row in enumerate(reader, start=2):
                try:
                    stamp = datetime.fromisoformat(row["time"]).replace(tzinfo=UTC)
                    active, total = int(row["active"]), int(row["total"])
                except (TypeError, ValueError):
                    raise NodeSeriesError(f"{self.path}:{line}: not time,active,total") from None
                if total > 0:
                    rows.append((stamp.timestamp() - self.origin_epoch_s, active / total))
        if not rows:
            raise NodeSeriesError(f"{self.path}: no minute with nodes online")
        return rows


@dataclass(frozen=True)
class AutoSize:
    """``philly:auto``'s answer and the figures behind it, for the run's notes."""

    nodes: int
    offered_gpus: float
    active_fraction: float
    window_start_s: float
    window_end_s: float
    covered_by_series: bool

    def note(self) -> str:
        days = (self.window_end_s - self.window_start_s) / 86400
        where = "the same window" if self.covered_by_series else "the whole series"
        return (
            f"cluster philly:auto = philly:{self.nodes}: the trace offers {self.offered_gpus:,.0f} "
            f"GPUs on average over {days:,.1f} days of submissions, and Philly's node series "
            f"shows {100 * self.active_fraction:.1f} % of nodes running jobs over {where}"
        )


def find_node_series(folder: Path) -> Path | None:
    found = sorted(folder.glob(NODE_SERIES_GLOB))
    return found[0] if found else None


def auto_size(jobs: Sequence[tuple[float, float, int]], activity: NodeActivity) -> AutoSize:
    """Nodes for ``jobs`` given as (submit s, duration s, GPUs), as the module says."""
    if not jobs:
        raise ValueError("philly:auto needs at least one job to size the cluster for")
    first = min(j[0] for j in jobs)
    last = max(j[0] for j in jobs)
    minutes = activity.minutes()
    start, end = max(first, minutes[0][0]), min(last, minutes[-1][0])
    covered = end - start >= MIN_WINDOW_S
    if not covered:
        start, end = first, max(last, first + MIN_WINDOW_S)
        fractions = [f for _, f in minutes]
    else:
        fractions = [f for t, f in minutes if start <= t <= end]
    active_fraction = sum(fractions) / len(fractions)
    # GPU-seconds the jobs would run inside the window on a cluster with no queue: a long job
    # submitted late counts only its part in the window (counting all of it oversized a
    # week's slice for the weeks its longest jobs run after it)
    offered_gpu_s = sum(g * max(0.0, min(t + d, end) - max(t, start)) for t, d, g in jobs)
    offered_gpus = offered_gpu_s / (end - start)
    widest = max(math.ceil(g / PHILLY_GPUS_PER_NODE) for _, _, g in jobs)
    needed = math.ceil(offered_gpus / (PHILLY_GPUS_PER_NODE * max(active_fraction, 1e-9)))
    return AutoSize(max(needed, widest, 1), offered_gpus, active_fraction, start, end, covered)
