"""Sia (Jayaram Subramanya et al., SOSP '23) workloads: Pollux's schema, Philly and
"newTrace" samples (``workloads/<trace>/workload-N.csv``).

Sia profiles each application per GPU type (``placements-<gpu>.csv``); ``gpu`` picks one
(``aws`` = T4, ``rtx`` = RTX 2080Ti, ``dgx`` = A100, ``quad`` = Quadro RTX6000). The default,
no suffix, is the profile Sia shares with Pollux. Run times as in
:mod:`simulator.traces.app_profiles`.
"""

from __future__ import annotations

from pathlib import Path

from phalanx.simulator.job import TraceWorkload
from phalanx.simulator.traces.app_profiles import load_profiled_workload


def load_sia(
    path: Path,
    *,
    gpu: str = "",
    profiles: Path | None = None,
    strict: bool = False,
) -> TraceWorkload:
    suffix = f"-{gpu}" if gpu else ""
    return load_profiled_workload(
        path, profiles=profiles, suffix=suffix, strict=strict, label="sia"
    )
