"""Sweeps: policies x traces x seeds x cluster variants, run in parallel and compared.

Each run is a :class:`~simulator.run.RunSpec` of plain values, executed by
:func:`run_summary` in a local process pool or, for sweeps that outgrow one machine, as Ray
tasks on an existing cluster (``pip install phalanx[ray]``; the workers need phalanx
installed too). Results come back as summary rows; :func:`aggregate` averages them over
seeds.
"""

from __future__ import annotations

import csv
import itertools
import math
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from phalanx.simulator.config import SimulationConfig
from phalanx.simulator.plots import write_sweep_plots
from phalanx.simulator.run import RunSpec, run_spec
from phalanx.simulator.traces import TraceOptions

GROUP_KEYS = ("trace", "cluster", "policy", "scorer")
COMPARED = (
    "gpu_allocation_ratio",
    "gpu_utilisation",
    "fragmentation_ratio",
    "jct_mean_s",
    "jct_p99_s",
    "queue_delay_mean_s",
    "makespan_s",
    "jain_fairness",
    "ftf_rho_max",
    "preemptions",
    "jobs_completed",
)


class RayMissingError(RuntimeError):
    """``--ray`` was given but Ray is not installed."""


def expand(
    traces: Sequence[str],
    policies: Sequence[str],
    seeds: Sequence[int],
    clusters: Sequence[str | None],
    *,
    base: SimulationConfig,
    trace_options: TraceOptions,
    scorers: Sequence[str | None] = (None,),
    demand: float | None = None,
    pod_lists: Sequence[str | None] = (None,),
) -> list[RunSpec]:
    """Every combination, one :class:`RunSpec` each. A cluster may be ``LABEL=SPEC``."""
    specs = []
    for trace, pod_list, cluster, policy, scorer, seed in itertools.product(
        traces, pod_lists, clusters, policies, scorers, seeds
    ):
        label, spec = _label(cluster)
        specs.append(
            RunSpec(
                trace=trace,
                cluster=spec,
                config=replace(base, policy=policy, scorer=scorer, seed=seed),
                trace_options=replace(trace_options, seed=seed, pod_list=pod_list),
                demand=demand,
                label=label,
            )
        )
    return specs


def _label(cluster: str | None) -> tuple[str, str | None]:
    if cluster is None:
        return "trace", None
    name, sep, spec = cluster.partition("=")
    return (name, spec) if sep else (cluster, cluster)


def run_summary(spec: RunSpec) -> dict[str, Any]:
    """Run one spec and return its summary row, labelled for grouping (a worker entry point)."""
    result, summary = run_spec(spec)
    # a sweep's rows are flat metrics for runs.csv and the comparison; the per-queue wait
    # reasons are each run's own report (``phalanx simulate --out``)
    summary.pop("wait_reasons", None)
    trace = spec.trace
    if spec.trace_options.pod_list:
        trace = f"{trace}#{spec.trace_options.pod_list}"
    return {
        **summary,
        "rows_skipped_why": "; ".join(result.skipped.lines()),
        "trace": trace,
        "cluster": spec.label,
        "policy": spec.config.policy,
        # The scorer that ran: under the fill protocol ``--policy fgd`` names one.
        "scorer": summary["scorer"] or "",
        "seed": spec.config.seed,
    }


def run_local(
    specs: Sequence[RunSpec],
    workers: int | None = None,
    on_done: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run specs in a process pool (``workers=1`` runs them in this process)."""
    workers = workers or os.cpu_count() or 1
    rows: list[dict[str, Any]] = []
    if workers == 1 or len(specs) == 1:
        for spec in specs:
            rows.append(run_summary(spec))
            if on_done:
                on_done(rows[-1])
        return rows
    with ProcessPoolExecutor(max_workers=min(workers, len(specs))) as pool:
        futures = [pool.submit(run_summary, spec) for spec in specs]
        for future in as_completed(futures):
            rows.append(future.result())
            if on_done:
                on_done(rows[-1])
    return rows


def run_ray(
    specs: Sequence[RunSpec],
    address: str,
    on_done: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run specs as Ray tasks on the cluster at ``address`` (``auto`` for the local one)."""
    try:
        import ray
    except ImportError:
        raise RayMissingError(
            "--ray needs Ray, which is not installed: pip install 'phalanx[ray]'"
        ) from None
    ray.init(address=address, ignore_reinit_error=True)
    task = ray.remote(run_summary)
    pending = [task.remote(spec) for spec in specs]
    rows: list[dict[str, Any]] = []
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        rows.append(ray.get(done[0]))
        if on_done:
            on_done(rows[-1])
    return rows


def skipped_notes(rows: Iterable[dict[str, Any]]) -> list[str]:
    """One line per trace whose loader skipped rows: how many, and why (the same for every
    run of that trace)."""
    notes = {}
    for row in rows:
        if row.get("rows_skipped"):
            notes.setdefault(
                row["trace"],
                f"{row['trace']}: {row['rows_skipped']} trace rows skipped: "
                f"{row.get('rows_skipped_why', '')}",
            )
    return [notes[t] for t in sorted(notes)]


def aggregate(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds of each compared metric, per group."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in GROUP_KEYS), []).append(row)
    table = []
    for key in sorted(groups, key=lambda k: tuple(str(x) for x in k)):
        members = groups[key]
        out: dict[str, Any] = dict(zip(GROUP_KEYS, key, strict=True))
        out["runs"] = len(members)
        for metric in COMPARED:
            values = np.array(
                [m[metric] for m in members if m.get(metric) is not None], dtype=np.float64
            )
            out[metric] = float(values.mean()) if values.size else None
            out[f"{metric}_std"] = float(values.std()) if values.size > 1 else None
        table.append(out)
    return table


def write_sweep(rows: list[dict[str, Any]], table: list[dict[str, Any]], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    runs_path = out / "runs.csv"
    _write(runs_path, sorted(rows, key=lambda r: tuple(str(r[k]) for k in (*GROUP_KEYS, "seed"))))
    table_path = out / "comparison.csv"
    _write(table_path, table)
    markdown = out / "comparison.md"
    skipped = "".join(f"\n- {line}" for line in skipped_notes(rows))
    if skipped:
        skipped = "\n\nTrace rows skipped:\n" + skipped
    markdown.write_text(comparison_markdown(table) + skipped + "\n")
    return [runs_path, table_path, markdown, *write_sweep_plots(table, out)]


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def comparison_markdown(table: list[dict[str, Any]]) -> str:
    from phalanx.simulator.report import format_value

    shown = (
        ("gpu_allocation_ratio", "alloc", "pct"),
        ("gpu_utilisation", "util", "pct"),
        ("fragmentation_ratio", "frag", "pct"),
        ("jct_mean_s", "JCT mean", "time"),
        ("jct_p99_s", "JCT p99", "time"),
        ("queue_delay_mean_s", "wait mean", "time"),
        ("makespan_s", "makespan", "time"),
        ("jain_fairness", "Jain", "num"),
        ("preemptions", "preempt", "num"),
    )
    head = "| trace | cluster | policy | scorer | runs | " + " | ".join(s[1] for s in shown) + " |"
    lines = [head, "|" + "---|" * (5 + len(shown))]
    for row in table:
        cells = [row["trace"], row["cluster"], row["policy"], row["scorer"] or "-", row["runs"]]
        for key, _, kind in shown:
            value = format_value(row.get(key), kind)
            std = row.get(f"{key}_std")
            if std is not None and math.isfinite(std) and kind == "pct":
                value += f" ± {100 * std:.2f}"
            cells.append(value)
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def parse_seeds(text: str) -> list[int]:
    """``42-51``, ``1,2,5`` or a mix such as ``1,10-12``."""
    seeds: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, sep, last = part.partition("-")
        try:
            if sep:
                lo, hi = int(first), int(last)
                if hi < lo:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise ValueError(f"seeds {text!r}: {part!r} is not N or N-M") from None
    if not seeds:
        raise ValueError("no seeds given")
    return seeds
