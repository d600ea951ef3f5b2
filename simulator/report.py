"""What a run leaves behind: a terminal table, and with ``--out`` per-job and time-series CSVs,
a tenant table, PNG plots, ``summary.json`` and a short Markdown report."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from phalanx.simulator.metrics import tenant_table
from phalanx.simulator.plots import write_run_plots
from phalanx.simulator.records import SimulationResult
from phalanx.simulator.timeline import SAMPLE_COLUMNS
from phalanx.simulator.wait_reasons import main_reason, queued_s, reasons_cell

TABLE_ROWS = (
    ("gpu_allocation_ratio", "GPU allocation ratio", "pct"),
    ("gpu_utilisation", "GPU goodput (useful work)", "pct"),
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
    ("jobs_running", "jobs still running", "int"),
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
    "wait_reason",
    "last_wait_reason",
    "queued_s",
    "wait_s_by_reason",
)
SECONDS_PER_HOUR = 3600.0
SECONDS_PER_MINUTE = 60.0
SAME_AT_SHOWN_PRECISION = 5e-5
"""Two ratios printed as percentages with two decimals look equal below this difference."""
GOODPUT_SAME_REPLAY = "= allocation: no --slowdown and no preempted work lost"
GOODPUT_SAME_SLOWDOWN = "= allocation: no placement slowed a job, no preempted work lost"
GOODPUT_SAME_FILL = "= allocation: nothing finishes under the fill protocol"
GLOSSARY_WIDTH = 100
TERMS = {
    "replay": "jobs run at their trace's submit times for their trace's durations",
    "fill": "jobs arrive one at a time and never leave, until the GPUs asked for reach that "
    "multiple of capacity (the FGD paper's protocol)",
    "goodput": "GPU time doing work at full speed over capacity (lower than allocation only "
    "with --slowdown or preempted work thrown away)",
    "rho": "JCT over the job's run time on a fair share (> 1: worse than fair)",
    "placement cost": "topology cost of a gang's GPUs (H100 NVLink = 1; lower is better)",
}
"""Words of the results table a newcomer does not know, explained under it."""


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


def table_cells(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, shown value) of every results row. Goodput equal to the allocation ratio says
    why, since a Slurm or Kueue user reads the two words as one thing and would otherwise
    suspect a bug."""
    cells = []
    for key, label, kind in TABLE_ROWS:
        text = format_value(summary.get(key), kind)
        if key == "gpu_utilisation" and _same_as_allocation(summary):
            if str(summary.get("protocol", "")).startswith("fill"):
                why = GOODPUT_SAME_FILL
            else:
                why = GOODPUT_SAME_SLOWDOWN if summary.get("slowdown") else GOODPUT_SAME_REPLAY
            text += f" ({why})"
        cells.append((label, text))
    return cells


def _same_as_allocation(summary: dict[str, Any]) -> bool:
    goodput, allocation = summary.get("gpu_utilisation"), summary.get("gpu_allocation_ratio")
    if goodput is None or allocation is None:
        return False
    return abs(goodput - allocation) < SAME_AT_SHOWN_PRECISION


def run_heading(summary: dict[str, Any]) -> str:
    """Trace, cluster, and the queue policy and scorer that actually ran."""
    policy = summary.get("queue_policy") or summary["policy"]
    return (
        f"{summary['workload']} on {summary['cluster']} ({summary['cluster_gpus']} GPUs), "
        f"policy {policy}"
        + (f", scorer {summary['scorer']}" if summary.get("scorer") else "")
        + f", {summary['protocol']}, seed {summary['seed']}"
    )


def metrics_table(summary: dict[str, Any]) -> str:
    head = run_heading(summary)
    width = max(len(label) for _, label, _ in TABLE_ROWS)
    lines = [head, "-" * len(head)]
    for label, text in table_cells(summary):
        lines.append(f"{label:<{width}}  {text}")
    lines.append(
        f"{'simulated in':<{width}}  {summary['wall_s']:.2f} s "
        f"({summary['events']} events, {summary['cycles']} cycles)"
    )
    return "\n".join(lines)


def glossary(summary: dict[str, Any]) -> list[str]:
    """The table's unfamiliar words, wrapped: the run's protocol, rho and placement cost
    (goodput explains itself in its row)."""
    import textwrap

    protocol = "fill" if str(summary.get("protocol", "")).startswith("fill") else "replay"
    words = [protocol, "rho", "placement cost"]
    text = "terms: " + "; ".join(f"{word} = {TERMS[word]}" for word in words) + "."
    return textwrap.wrap(text, GLOSSARY_WIDTH, subsequent_indent="  ")


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
                "wait_reason": main_reason(r),
                "last_wait_reason": r.wait_code,
                "queued_s": queued_s(r),
                "wait_s_by_reason": reasons_cell(r),
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
    written.extend(write_run_plots(result, out))
    written.append(write_markdown(result, summary, tenants, out / "report.md"))
    return written


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_markdown(
    result: SimulationResult,
    summary: dict[str, Any],
    tenants: list[dict[str, Any]],
    path: Path,
) -> Path:
    lines = [
        f"# Simulation: {result.workload} on {result.cluster}",
        "",
        run_heading(summary),
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for label, text in table_cells(summary):
        lines.append(f"| {label} | {text} |")
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
    lines += _wait_reason_lines(summary.get("wait_reasons") or {})
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
        f"- {_policy_setting(result)}, preemption `{result.preemption or 'none'}`, solver "
        f"`{config.solver}`, seed {config.seed}",
        f"- scheduling interval: {config.scheduling_interval_s or 'event-driven'}; "
        f"slowdown model {'on' if config.slowdown.enabled else 'off'}",
        f"- simulated in {summary['wall_s']:.2f} s ({summary['events']} events, "
        f"{summary['cycles']} cycles)",
        "",
        "Files: `jobs.csv` (per job), `timeseries.csv`, `tenants.csv`, `summary.json`, plots "
        "(`*.png`).",
        "",
        "## Terms",
        "",
        *(f"- {word}: {meaning}" for word, meaning in TERMS.items()),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _wait_reason_lines(by_queue: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """The report's table of why jobs waited: per queue, each reason code with the jobs that
    waited under it and their wait in all and on average (``summary["wait_reasons"]``)."""
    if not by_queue:
        return []
    lines = [
        "",
        "## Why jobs waited",
        "",
        "Time queued under each reason code (the codes of `phalanx explain` and the extender's "
        "events; `untried`: not yet looked at by a cycle), per queue; a job counts under every "
        "reason it waited for.",
        "",
        "| queue | reason | jobs | wait total | wait mean |",
        "|---|---|---|---|---|",
    ]
    for queue, reasons in by_queue.items():
        for code, cell in reasons.items():
            lines.append(
                f"| {queue} | {code} | {cell['jobs']} | "
                f"{format_value(cell['total_s'], 'time')} | "
                f"{format_value(cell['mean_s'], 'time')} |"
            )
    return lines


def _policy_setting(result: SimulationResult) -> str:
    """The queue policy and scorer that ran, and the name given when it was a scorer's."""
    config = result.config
    policy = result.queue_policy or config.policy
    text = f"policy `{policy}`"
    if policy != config.policy:
        text += (
            f" (`--policy {config.policy}` is a scorer; one pod at a time under the fill "
            "protocol leaves nothing to order, so it ran as the scorer)"
        )
    scorer = f"`{result.scorer}`" if result.scorer else "none (the engine's own placement cost)"
    return f"{text}, scorer {scorer}"
