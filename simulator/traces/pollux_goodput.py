"""Run time of a TunedJobs job as Pollux's own simulator computes it (goodput model).

Pollux's published Tiresias+TunedJobs figure comes from its simulator (adaptdl
``osdi21-artifact``, ``simulator/simulator.py``), which does not run a job for "iterations to
the last epoch x step time" (:mod:`simulator.traces.app_profiles`). ``Job.step`` advances a job
in *progress*: the ``progress`` column of ``validation-<bsz>.csv``, samples' worth of
iterations at the application's initial (smallest validated) batch size. Each second of
running adds ``goodput = gain / step_time``, where

    scale = batch_size / init_batch_size
    gain  = (grad_var + grad_sqr) / (grad_var / scale + grad_sqr)        (statistical efficiency)
    step_time = step + accum_steps * (step - sync)                      (placement's throughput)

with ``grad_sqr``, ``grad_var`` of the job's batch size in the current epoch
(``Application.get_grad_stats``, interpolated between validated batch sizes) and ``step``,
``sync`` of the job's placement (``Application.get_throughput``). Epoch ``e`` ends when progress
reaches ``get_progress(e + 1)``, the smallest progress any validated batch size reached at the
end of that epoch; each epoch's time is rounded to whole seconds (``delta = round(...)``); the
job completes when it has finished ``max_epochs`` epochs (``get_completion_epoch`` is
``max_epochs - 1``: no application has a target metric). A large batch therefore needs more
time than its measured iterations say whenever the gain its gradient statistics give is below
the measured progress / iteration ratio, and a job spread over more nodes runs slower.

Batch split (``Job.update_local_bsz``): ``local = ceil(batch / replicas)``; ``accum_steps =
ceil(local / max_local_bsz) - 1``, at least 1 for a single replica whose batch exceeds the
initial batch size; ``atomic = ceil(local / (accum_steps + 1))``, at most
``max_batch_size // (replicas * (accum_steps + 1))``. Application limits
(``applications.py``, ``Application.__init__``): ``init_batch_size`` and ``max_batch_size``
the smallest and largest validated batch sizes, ``min_local_bsz`` / ``max_local_bsz`` the
extremes of ``placements.csv`` (yolov3: ``max_local_bsz=8``), epochs from ``APPLICATIONS``.

Throughput of a placement (``get_throughput``): the placement (GPUs per node; Pollux's
Tiresias fills the nodes with the most free GPUs first, so non-increasing) at its smallest
rotation, linearly interpolated in the local batch size when ``placements.csv`` has it;
otherwise a linear interpolation over (nodes, replicas, local batch) between the
``placements.csv`` means and ``scalability.csv`` (``LinearNDInterpolator``, which needs
scipy; only placements of more than 4 nodes or with more than 4 GPUs on a node need it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from phalanx.simulator.job import TraceError
from phalanx.simulator.traces.app_profiles import (
    APP_EPOCHS,
    APP_MAX_LOCAL_BSZ,
    PLACEMENT_COLUMNS,
    POLLUX_GPUS_PER_NODE,
    SCALABILITY_COLUMNS,
    _read,
)
from phalanx.simulator.traces.rows import RowError

VALIDATION_STATS_COLUMNS = ("progress", "iteration", "grad_sqr", "grad_var")
RESTART_DELAY_S = 30.0
"""Seconds a job makes no progress after every (re)allocation (``Job.reallocate``:
``rescale_time = 30``)."""
MAX_INTERPOLATED_NODES = 16
"""``get_throughput`` clamps the node count to 16 before interpolating."""


@dataclass
class _Validation:
    progress: np.ndarray
    grad_sqr: np.ndarray
    grad_var: np.ndarray


@dataclass
class PolluxApplication:
    """The parts of Pollux's ``Application`` that a fixed-size job's run time needs."""

    name: str
    validation: dict[int, _Validation]
    placements: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    scattered: np.ndarray
    """Rows (nodes, replicas, local_bsz, step, sync): placement means, then scalability."""
    max_epochs: int
    init_batch_size: int
    max_batch_size: int
    min_local_bsz: float
    max_local_bsz: float
    _interpolator: Any = field(default=None, repr=False)

    @classmethod
    def load(cls, folder: Path) -> PolluxApplication:
        """Read ``app_profiles/<app>/`` (placements, scalability, validation-<bsz>.csv)."""
        validation = {}
        for path in sorted(folder.glob("validation-*.csv")):
            rows = _read(path, VALIDATION_STATS_COLUMNS)
            validation[int(path.stem.split("-")[-1])] = _Validation(
                *(
                    np.array([float(r[c]) for r in rows])
                    for c in ("progress", "grad_sqr", "grad_var")
                )
            )
        if not validation:
            raise TraceError(str(folder), "no validation-<batch size>.csv files")
        validation = dict(sorted(validation.items()))
        place_rows = _read(folder / "placements.csv", PLACEMENT_COLUMNS)
        grouped: dict[str, list[tuple[float, float, float]]] = {}
        means: dict[tuple[int, int, float], list[tuple[float, float]]] = {}
        for r in place_rows:
            key = str(int(float(r["placement"])))
            bsz, step, sync = (float(r[c]) for c in ("local_bsz", "step_time", "sync_time"))
            grouped.setdefault(key, []).append((bsz, step, sync))
            shape = (len(key), sum(map(int, key)), bsz)
            means.setdefault(shape, []).append((step, sync))
        placements = {}
        for key, points in grouped.items():
            arr = np.array(sorted(points))
            placements[key] = (arr[:, 0], arr[:, 1], arr[:, 2])
        scattered = [(*shape, *np.mean(v, axis=0)) for shape, v in sorted(means.items())]
        scale_path = folder / "scalability.csv"
        if scale_path.is_file():
            for r in _read(scale_path, SCALABILITY_COLUMNS):
                scattered.append(tuple(float(r[c]) for c in SCALABILITY_COLUMNS))
        local = np.concatenate([p[0] for p in placements.values()])
        name = folder.name
        return cls(
            name=name,
            validation=validation,
            placements=placements,
            scattered=np.array(scattered, dtype=float),
            max_epochs=APP_EPOCHS.get(name, min(len(v.progress) for v in validation.values())),
            init_batch_size=min(validation),
            max_batch_size=max(validation),
            min_local_bsz=float(local.min()),
            max_local_bsz=float(APP_MAX_LOCAL_BSZ.get(name, local.max())),
        )

    def progress_at(self, epoch: int) -> float:
        """``get_progress``: progress at the end of ``epoch`` epochs (0 at the start)."""
        if epoch == 0:
            return 0.0
        return float(min(v.progress[epoch - 1] for v in self.validation.values()))

    def grad_stats(self, batch_size: float, epoch: int) -> tuple[float, float]:
        """``get_grad_stats``: (grad_sqr, grad_var) during ``epoch``, interpolated linearly
        between the validated batch sizes around ``batch_size``."""
        sizes = list(self.validation)
        lower = max((b for b in sizes if b <= batch_size), default=None)
        upper = min((b for b in sizes if b >= batch_size), default=None)
        if lower is None or upper is None:
            raise RowError("batch_size", f"{self.name}: outside the validated {sizes}", batch_size)
        low, up = self.validation[lower], self.validation[upper]
        if lower == upper:
            return float(low.grad_sqr[epoch]), float(low.grad_var[epoch])
        span = upper - lower
        sqr = (
            (batch_size - lower) * up.grad_sqr[epoch] + (upper - batch_size) * low.grad_sqr[epoch]
        ) / span
        var = (
            (batch_size - lower) * up.grad_var[epoch] + (upper - batch_size) * low.grad_var[epoch]
        ) / span
        return float(sqr), float(var)

    def throughput(self, placement: tuple[int, ...], local_bsz: float) -> tuple[float, float]:
        """``get_throughput``: (step_time, sync_time) in seconds of one step."""
        nodes = tuple(n for n in placement if n)
        nodes = min(nodes[i:] + nodes[:i] for i in range(len(nodes)))
        key = "".join(map(str, nodes))
        if key in self.placements:
            bsz, step, sync = self.placements[key]
            if not bsz[0] <= local_bsz <= bsz[-1]:
                raise RowError(
                    "batch_size", f"{self.name}: local batch outside placement {key}", local_bsz
                )
            return float(np.interp(local_bsz, bsz, step)), float(np.interp(local_bsz, bsz, sync))
        point = [min(len(nodes), MAX_INTERPOLATED_NODES), sum(nodes), local_bsz]
        step, sync = self._scattered_interpolator()(point)[0]
        if not (math.isfinite(step) and math.isfinite(sync)):
            raise RowError("num_replicas", f"{self.name}: no throughput for placement {key}", point)
        return float(step), float(sync)

    def _scattered_interpolator(self) -> Any:
        if self._interpolator is None:
            try:
                from scipy.interpolate import LinearNDInterpolator
            except ImportError as exc:  # only placements beyond placements.csv need it
                raise ImportError(
                    "Pollux's throughput of placements beyond placements.csv is scipy's "
                    "LinearNDInterpolator: pip install 'phalanx[pollux]'"
                ) from exc
            self._interpolator = LinearNDInterpolator(self.scattered[:, :3], self.scattered[:, 3:])
        return self._interpolator


@dataclass
class TunedJobRuntime:
    """One fixed-size job (replicas, total batch) of an application, as Pollux runs it."""

    app: PolluxApplication
    replicas: int
    batch_size: int
    _step_s: dict[tuple[int, ...], float] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.replicas < 1 or self.batch_size < 1:
            raise RowError(None, "num_replicas and batch_size must be at least 1")

    @property
    def split(self) -> tuple[int, int]:
        """(atomic_bsz, accum_steps) of ``Job.update_local_bsz`` with a target batch size."""
        app, replicas = self.app, self.replicas
        local = math.ceil(self.batch_size / replicas - 1e-8)
        accum = math.ceil(local / app.max_local_bsz - 1e-8) - 1
        if replicas == 1 and self.batch_size > app.init_batch_size:
            accum = max(1, accum)
        atomic = math.ceil(local / (accum + 1) - 1e-8)
        return min(atomic, int(app.max_batch_size / (replicas * (accum + 1)))), accum

    @property
    def packed(self) -> tuple[int, ...]:
        """The placement Pollux's Tiresias gives on an empty cluster: 4 GPUs per node."""
        full, rest = divmod(self.replicas, POLLUX_GPUS_PER_NODE)
        return (POLLUX_GPUS_PER_NODE,) * full + ((rest,) if rest else ())

    def step_time_s(self, placement: tuple[int, ...]) -> float:
        """Seconds per optimizer step (with gradient accumulation) on ``placement``."""
        if sum(placement) != self.replicas:
            raise ValueError(f"placement {placement} does not hold {self.replicas} replicas")
        if placement not in self._step_s:
            atomic, accum = self.split
            step, sync = self.app.throughput(placement, atomic)
            self._step_s[placement] = step + (step - sync) * accum
        return self._step_s[placement]

    def epoch_steps(self) -> np.ndarray:
        """Per epoch, progress to make / gain: the epoch's time is this x the step time."""
        app = self.app
        atomic, accum = self.split
        batch = self.replicas * atomic * (accum + 1)
        scale = batch / app.init_batch_size
        steps = []
        for epoch in range(app.max_epochs):
            sqr, var = app.grad_stats(batch, epoch)
            gain = (var + sqr) / (var / scale + sqr)
            steps.append((app.progress_at(epoch + 1) - app.progress_at(epoch)) / gain)
        return np.array(steps)

    def duration_s(self, placement: tuple[int, ...] | None = None) -> float:
        """Run time without interruption and without the restart delay: each epoch's time
        rounded to whole seconds, as ``Job.step`` rounds it."""
        step_s = self.step_time_s(placement or self.packed)
        return float(sum(round(float(n * step_s)) for n in self.epoch_steps()))

    def stretch(self, placement: tuple[int, ...]) -> float:
        """Run-time factor on ``placement`` against the packed one: progress per second is
        proportional to 1 / step time, the same in every epoch."""
        return self.step_time_s(tuple(sorted(placement, reverse=True))) / self.step_time_s(
            self.packed
        )


class PolluxApplications:
    """Every application under one ``app_profiles`` folder, loaded on demand."""

    def __init__(self, folder: Path) -> None:
        if not folder.is_dir():
            raise TraceError(str(folder), "no app_profiles folder; it gives job run times")
        self.folder = folder
        self._apps: dict[str, PolluxApplication] = {}

    def get(self, app: str) -> PolluxApplication:
        """The application's profiles; an unknown name lists the known ones."""
        if app not in self._apps:
            path = self.folder / app
            if not path.is_dir():
                known = sorted(p.name for p in self.folder.iterdir() if p.is_dir())
                raise RowError("application", f"has no profile; known: {known}", app)
            self._apps[app] = PolluxApplication.load(path)
        return self._apps[app]
