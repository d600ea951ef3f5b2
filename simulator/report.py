"""What a run leaves behind: a terminal table, and with ``--out`` per-job and time-series CSVs,
a tenant table, PNG plots, ``summary.json`` and a short Markdown report."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from phalanx.simulator.metrics import tenant_table
from phalanx.simulator.records import SimulationResult
from phalanx.simulator.timeline import SAMPLE_COLUMNS

TABLE_ROWS = (
    ("gpu_allocation_ratio", "GPU allocation ratio", "pct"),
    ("gpu_utilisation", "GPU utilisation", "pct"),
    ("fragmentation_ratio", "fragmentation (of idle GPU)", "pct"),
    ("jct_mean_s", "JCT mean", "time"),
    ("jct_p50_s", "JCT p50", "time"),
    ("jct_p95_s", "JCT p95", "time"),
    ("jct_p99_s", "JCT p99", "time"),
    ("queue_delay_mean_s", "queueing delay mean", "time"),
    ("queue_delay_p95_s", "queueing delay p95", "time"),
    ("makespan_s", "makespan", "time"),
    ("jain_fairness", "Jain fairness (jobs, 1/rho)", "num"),
    ("ftf_rho_max", "finish-time fairness rho max", "num"),
    ("ftf_rho_unfair_fraction", "jobs with rho > 1", "pct"),
    ("preemptions", "preemptions", "int"),
    ("reservation_expiries", "reservation expiries", "int"),
    ("gang_placement_cost_mean", "gang placement cost mean", "num"),
    ("jobs_completed", "jobs completed", "int"),
    ("jobs_queued", "jobs still queued", "int"),
    ("jobs_rejected", "jobs rejected", "int"),
    ("jobs_unplaced", "jobs unplaced (fill)", "int"),
    ("jobs_total", "jobs total", "int"),
)
JOB_COLUMNS = (
    "name",
    "tenant",
    "job_class",
    "gpus",
    "pods",
    "submit_s",
    "first_start_s",
    "end_s",
    "wait_s",
    "jct_s",
    "duration_s",
    "stretch",
    "preemptions",
    "reservation_expiries",
    "nodes",
    "placement_cost",
    "comm_cost_ratio",
    "status",
    "reason",
)
SECONDS_PER_HOUR = 3600.0
SECONDS_PER_MINUTE = 60.0


def format_value(value: Any, kind: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if kind == "pct":
        return f"{100 * value:.2f}%"
    if kind == "time":
        if abs(value) >= SECONDS_PER_HOUR:
            return f"{value / SECONDS_PER_HOUR:.2f} h"
        if abs(value) >= SECONDS_PER_MINUTE:
            return f"{value / SECONDS_PER_MINUTE:.1f} min"
        return f"{value:.1f} s"
    if kind == "int":
        return f"{int(value)}"
    return f"{value:.3f}"


def metrics_table(summary: dict[str, Any]) -> str:
    head = (
        f"{summary['workload']} on {summary['cluster']} ({summary['cluster_gpus']} GPUs), "
        f"policy {summary['policy']}"
        + (f", scorer {summary['scorer']}" if summary.get("scorer") else "")
        + f", {summary['protocol']}, seed {summary['seed']}"
    )
    width = max(len(label) for _, label, _ in TABLE_ROWS)
    lines = [head, "-" * len(head)]
    for key, label, kind in TABLE_ROWS:
        lines.append(f"{label:<{width}}  {format_value(summary.get(key), kind)}")
    lines.append(
        f"{'simulated in':<{width}}  {summary['wall_s']:.2f} s "
        f"({summary['events']} events, {summary['cycles']} cycles)"
    )
    return "\n".join(lines)


def job_rows(result: SimulationResult) -> list[dict[str, Any]]:
    rows = []
    for r in result.runs:
        rows.append(
            {
                "name": r.job.name,
                "tenant": r.gang.tenant,
                "job_class": r.job.job_class,
                "gpus": r.gpus,
                "pods": len(r.gang.members),
                "submit_s": r.job.submit_time_s,
                "first_start_s": _cell(r.first_start_s),
                "end_s": _cell(r.end_s),
                "wait_s": _cell(r.wait_s),
                "jct_s": _cell(r.jct_s) if r.status == "completed" else "",
                "duration_s": _cell(r.job.duration_s),
                "stretch": r.stretch,
                "preemptions": r.preemptions,
                "reservation_expiries": r.reservation_expiries,
                "nodes": r.nodes,
                "placement_cost": _cell(r.placement_cost),
                "comm_cost_ratio": _cell(r.cost_ratio),
                "status": str(r.status),
                "reason": r.reason,
            }
        )
    return rows


def _cell(value: float) -> str | float:
    return value if math.isfinite(value) else ""


def write_outputs(result: SimulationResult, summary: dict[str, Any], out: Path) -> list[Path]:
    """Write every output file into ``out`` (created if needed); returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = [
        _write_csv(out / "jobs.csv", JOB_COLUMNS, job_rows(result)),
        _write_csv(
            out / "timeseries.csv",
            SAMPLE_COLUMNS,
            [dict(zip(SAMPLE_COLUMNS, row, strict=True)) for row in result.timeline.samples],
        ),
    ]
    tenants = tenant_table(result)
    if tenants:
        written.append(_write_csv(out / "tenants.csv", tuple(tenants[0]), tenants))
    summary_path = out / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    written.append(summary_path)
    written.extend(write_plots(result, out))
    written.append(write_markdown(result, summary, tenants, out / "report.md"))
    return written


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_plots(result: SimulationResult, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result.timeline.sample_array()
    written: list[Path] = []
    fill = result.fill_demand is not None
    if len(samples):
        x = samples[:, 1] * 100 if fill else samples[:, 0] / SECONDS_PER_HOUR
        xlabel = "arrived GPU demand (% of capacity)" if fill else "time (h)"
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(x, samples[:, 2] * 100, label="GPU allocation ratio")
        ax.plot(x, samples[:, 5] * 100, label="fragmentation (% of idle GPU)")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("%")
        ax.set_ylim(0, 105)
        ax.legend(loc="lower right")
        ax.set_title(f"{result.workload} on {result.cluster}")
        fig.tight_layout()
        path = out / ("allocation_vs_demand.png" if fill else "allocation_over_time.png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
        if not fill:
            fig, ax = plt.subplots(figsize=(7, 4))
            ax.plot(x, samples[:, 3], label="running jobs")
            ax.plot(x, samples[:, 4], label="queued jobs")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("jobs")
            ax.legend(loc="upper right")
            fig.tight_layout()
            path = out / "queue_over_time.png"
            fig.savefig(path, dpi=120)
            plt.close(fig)
            written.append(path)
    jct = np.sort([r.jct_s for r in result.runs if r.status == "completed"])
    if jct.size:
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(jct / SECONDS_PER_HOUR, np.arange(1, jct.size + 1) / jct.size)
        ax.set_xscale("log")
        ax.set_xlabel("job completion time (h)")
        ax.set_ylabel("fraction of jobs")
        fig.tight_layout()
        path = out / "jct_cdf.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def write_markdown(
    result: SimulationResult,
    summary: dict[str, Any],
    tenants: list[dict[str, Any]],
    path: Path,
) -> Path:
    lines = [
        f"# Simulation: {result.workload} on {result.cluster}",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for key, label, kind in TABLE_ROWS:
        lines.append(f"| {label} | {format_value(summary.get(key), kind)} |")
    if len(tenants) > 1:
        lines += [
            "",
            "## Tenants",
            "",
            "| tenant | jobs | GPU-hours | share | guarantee | JCT mean | wait mean |",
            "|---|---|---|---|---|---|---|",
        ]
        for t in tenants:
            lines.append(
                f"| {t['tenant']} | {t['jobs']} | {t['gpu_hours']:.1f} | "
                f"{format_value(t['share'], 'pct')} | {format_value(t['guarantee'], 'pct')} | "
                f"{format_value(t['jct_mean_s'], 'time')} | "
                f"{format_value(t['queue_delay_mean_s'], 'time')} |"
            )
    queued = [r for r in result.runs if r.status == "queued"]
    if queued:
        reasons: dict[str, int] = {}
        for r in queued:
            reasons[r.reason] = reasons.get(r.reason, 0) + 1
        lines += ["", "## Jobs still queued at the end", ""]
        lines += [f"- {n} x {reason}" for reason, n in sorted(reasons.items(), key=lambda i: -i[1])]
    if result.skipped.total:
        lines += ["", "## Trace rows skipped", ""]
        lines += [f"- {line}" for line in result.skipped.lines()]
    if result.notes:
        lines += ["", "## Assumptions", ""]
        lines += [f"- {note}" for note in result.notes]
    config = result.config
    lines += [
        "",
        "## Settings",
        "",
        f"- policy `{config.policy}`, scorer `{config.scorer}`, preemption "
        f"`{config.preemption}`, solver `{config.solver}`, seed {config.seed}",
        f"- scheduling interval: {config.scheduling_interval_s or 'event-driven'}; "
        f"slowdown model {'on' if config.slowdown.enabled else 'off'}",
        f"- simulated in {summary['wall_s']:.2f} s ({summary['events']} events, "
        f"{summary['cycles']} cycles)",
        "",
        "Files: `jobs.csv` (per job), `timeseries.csv`, `tenants.csv`, `summary.json`, plots "
        "(`*.png`).",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path
