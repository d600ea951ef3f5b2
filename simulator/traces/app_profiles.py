"""Run time of a fixed-size Pollux/Sia job from the applications' measured profiles.

Pollux and Sia workloads (``name,time,application,num_replicas,batch_size``) give no duration:
their simulators grow and shrink jobs as they go. Replaying them through a gang scheduler needs
one, so we use the same figure Pollux uses to pick its "TunedJobs" configurations
(``simulator/applications.py``, ``get_configurations``): the job runs ``num_replicas`` GPUs
packed 4 per node with its fixed total ``batch_size`` until the application's completion epoch,

    duration = iterations(batch_size, last epoch) x step_time(placement, local batch size)

where iterations come from ``validation-<bsz>.csv`` (interpolated between measured batch
sizes), step time from ``placements.csv`` (placements of up to 4 nodes) or ``scalability.csv``
(more nodes), interpolated in the local batch size, with gradient accumulation when the local
batch exceeds what one GPU holds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from phalanx.simulator.job import Job, TraceError, TraceWorkload
from phalanx.simulator.traces.rows import JobCollector, Row, RowError, RowReader

POLLUX_GPUS_PER_NODE = 4
"""Pollux's profiles and its TunedJobs configurations assume 4-GPU nodes."""
APP_EPOCHS = {
    "bert": 2,
    "cifar10": 100,
    "ncf": 10,
    "imagenet": 90,
    "deepspeech2": 80,
    "yolov3": 50,
}
"""Training epochs to completion per application (Pollux ``applications.py``)."""
APP_MAX_LOCAL_BSZ = {"yolov3": 8}
"""Per-GPU batch limits Pollux sets explicitly; others use the largest profiled batch."""
PLACEMENT_COLUMNS = ("placement", "local_bsz", "step_time", "sync_time")
SCALABILITY_COLUMNS = ("num_nodes", "num_replicas", "local_bsz", "step_time", "sync_time")
VALIDATION_COLUMNS = ("iteration",)


@dataclass
class _Curve:
    """Step and sync time as functions of the local batch size."""

    local_bsz: np.ndarray
    step_time: np.ndarray
    sync_time: np.ndarray

    def at(self, bsz: float) -> tuple[float, float]:
        return (
            float(np.interp(bsz, self.local_bsz, self.step_time)),
            float(np.interp(bsz, self.local_bsz, self.sync_time)),
        )


class AppProfile:
    """One application's profiles, read from ``app_profiles/<app>/``."""

    def __init__(self, folder: Path, suffix: str = ""):
        self.name = folder.name
        self.folder = folder
        self.placements = _curves(
            _read(folder / f"placements{suffix}.csv", PLACEMENT_COLUMNS),
            lambda v: str(int(float(v["placement"]))),
        )
        self.scalability = _curves(
            _read(folder / f"scalability{suffix}.csv", SCALABILITY_COLUMNS),
            lambda v: (int(float(v["num_nodes"])), int(float(v["num_replicas"]))),
        )
        self.iterations: dict[int, np.ndarray] = {}
        for path in sorted(folder.glob("validation-*.csv")):
            bsz = int(path.stem.split("-")[-1])
            rows = _read(path, VALIDATION_COLUMNS)
            self.iterations[bsz] = np.array([float(v["iteration"]) for v in rows])
        if not self.iterations:
            raise TraceError(str(folder), "no validation-<batch size>.csv files")
        self.epochs = APP_EPOCHS.get(self.name, min(len(a) for a in self.iterations.values()))
        self.max_local_bsz = APP_MAX_LOCAL_BSZ.get(
            self.name, max(float(c.local_bsz.max()) for c in self.placements.values())
        )

    def duration_s(self, replicas: int, batch_size: int) -> float:
        if replicas < 1 or batch_size < 1:
            raise RowError(None, "num_replicas and batch_size must be at least 1")
        placement = _packed(replicas)
        local_bsz = math.ceil(batch_size / replicas - 1e-8)
        accum_steps = math.ceil(local_bsz / self.max_local_bsz - 1e-8) - 1
        atomic_bsz = math.ceil(local_bsz / (accum_steps + 1) - 1e-8)
        step, sync = self._step_time(placement, atomic_bsz)
        step += accum_steps * (step - sync)
        return self._iterations(batch_size) * step

    def _step_time(self, placement: tuple[int, ...], bsz: int) -> tuple[float, float]:
        key = "".join(map(str, _smallest_rotation(placement)))
        if key in self.placements:
            return self.placements[key].at(bsz)
        if not self.scalability:
            raise RowError("num_replicas", f"{self.name} has no profile for placement {key}")
        wanted = (len(placement), sum(placement))
        nearest = min(
            self.scalability,
            key=lambda k: (abs(math.log(k[1] / wanted[1])), abs(math.log(k[0] / wanted[0]))),
        )
        return self.scalability[nearest].at(bsz)

    def _iterations(self, batch_size: int) -> float:
        epoch = self.epochs - 1
        sizes = sorted(self.iterations)
        lower = max((b for b in sizes if b <= batch_size), default=sizes[0])
        upper = min((b for b in sizes if b >= batch_size), default=sizes[-1])
        low_it = float(self.iterations[lower][min(epoch, len(self.iterations[lower]) - 1)])
        up_it = float(self.iterations[upper][min(epoch, len(self.iterations[upper]) - 1)])
        if lower == upper:
            return low_it
        share = (batch_size - lower) / (upper - lower)
        return low_it + share * (up_it - low_it)


class ProfileSet:
    """Profiles of every application under one ``app_profiles`` folder, loaded on demand."""

    def __init__(self, folder: Path, suffix: str = ""):
        if not folder.is_dir():
            raise TraceError(str(folder), "no app_profiles folder; it gives job run times")
        self.folder = folder
        self.suffix = suffix
        self._apps: dict[str, AppProfile] = {}

    def get(self, app: str) -> AppProfile:
        if app not in self._apps:
            path = self.folder / app
            if not path.is_dir():
                known = sorted(p.name for p in self.folder.iterdir() if p.is_dir())
                raise RowError("application", f"has no profile; known: {known}", app)
            self._apps[app] = AppProfile(path, self.suffix)
        return self._apps[app]


def _packed(replicas: int) -> tuple[int, ...]:
    full, rest = divmod(replicas, POLLUX_GPUS_PER_NODE)
    return (POLLUX_GPUS_PER_NODE,) * full + ((rest,) if rest else ())


def _smallest_rotation(placement: tuple[int, ...]) -> tuple[int, ...]:
    return min(placement[i:] + placement[:i] for i in range(len(placement)))


def _read(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        raise TraceError(str(path), "no such profile file")
    rows = []
    for row in RowReader(path, columns):
        if "__width__" in row.values:
            raise TraceError(str(path), "row width differs from the header", line=row.line)
        rows.append(row.values)
    return rows


def _curves(
    rows: list[dict[str, str]], key_of: Callable[[dict[str, str]], Hashable]
) -> dict[Any, _Curve]:
    grouped: dict[object, list[tuple[float, float, float]]] = {}
    for values in rows:
        grouped.setdefault(key_of(values), []).append(
            (float(values["local_bsz"]), float(values["step_time"]), float(values["sync_time"]))
        )
    curves = {}
    for key, points in grouped.items():
        points.sort()
        arr = np.array(points)
        curves[key] = _Curve(arr[:, 0], arr[:, 1], arr[:, 2])
    return curves


WORKLOAD_COLUMNS = ("name", "time", "application", "num_replicas", "batch_size")
PROFILES_FOLDER = "app_profiles"
SEARCH_PARENTS = 3


def find_profiles(start: Path) -> Path:
    here = start if start.is_dir() else start.parent
    for folder in [here, *here.parents][: SEARCH_PARENTS + 1]:
        if (folder / PROFILES_FOLDER).is_dir():
            return folder / PROFILES_FOLDER
    raise TraceError(
        str(start),
        f"no {PROFILES_FOLDER}/ folder here or in the {SEARCH_PARENTS} folders above; "
        "it gives each application's speed, needed for job run times",
    )


def workload_file(path: Path) -> Path:
    """A workload CSV, or a folder holding exactly one."""
    if not path.is_dir():
        return path
    found = sorted(path.glob("*.csv"))
    if len(found) == 1:
        return found[0]
    raise TraceError(
        str(path),
        f"holds {len(found)} workloads; name one: {[p.name for p in found][:10]}",
    )


def load_profiled_workload(
    path: Path,
    *,
    profiles: Path | None,
    suffix: str,
    strict: bool,
    label: str,
) -> TraceWorkload:
    """A Pollux-schema workload with run times from the application profiles."""
    source = workload_file(path)
    profile_set = ProfileSet(profiles or find_profiles(source), suffix)
    collector = JobCollector(strict=strict)

    def make(row: Row, where: str) -> Job:
        app = row.text("application")
        replicas = row.integer("num_replicas")
        batch = row.integer("batch_size")
        return Job(
            name=row.text("name"),
            submit_time_s=row.number("time"),
            duration_s=profile_set.get(app).duration_s(replicas, batch),
            gpus=replicas,
            job_class=app,
            source=where,
        )

    collector.add_rows(RowReader(source, WORKLOAD_COLUMNS), make)
    return TraceWorkload(
        name=f"{label}-{source.stem}",
        jobs=collector.jobs,
        source=str(source),
        skipped=collector.skipped,
        notes=[
            f"{label}: fixed-size jobs; run time = iterations to the last epoch x profiled "
            f"step time, {POLLUX_GPUS_PER_NODE} GPUs per node ({profile_set.folder})"
        ],
    )
