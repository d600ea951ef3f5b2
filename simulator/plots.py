"""PNG charts of one run (``simulate --out``) and of a sweep (``sweep --out``).

A chart is often looked at alone, pasted into a document far from the command that made it,
so each one says in its title what ran (policy and scorer, trace, cluster), keeps its legend
clear of the data, and, for sweep bars, says what the bar and its error bar are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from phalanx.simulator.records import SimulationResult

SECONDS_PER_HOUR = 3600.0
PERCENT = 100.0
DPI = 120
RUN_FIGSIZE_IN = (7.5, 4.5)
SWEEP_HEIGHT_IN = 4.8
SWEEP_WIDTH_PER_BAR_IN = 0.6
SWEEP_MIN_WIDTH_IN = 6.5
TITLE_FONTSIZE = 10
SMALL_FONTSIZE = 7
ALLOCATION_YMAX_PCT = 105
SWEEP_METRICS = (
    ("gpu_allocation_ratio", "GPU allocation ratio (%)", PERCENT),
    ("jct_mean_s", "mean JCT (h)", 1 / SECONDS_PER_HOUR),
    ("queue_delay_mean_s", "mean queueing delay (h)", 1 / SECONDS_PER_HOUR),
)
"""(summary key, axis label, scale from the summary's unit to the axis's)."""


def run_title(result: SimulationResult, what: str) -> str:
    """``what``, then the run it belongs to: policy (and scorer), trace, cluster, protocol."""
    scorer = f", scorer {result.scorer}" if result.scorer else ""
    protocol = f"fill to {result.fill_demand:g}x" if result.fill_demand is not None else "replay"
    policy = result.queue_policy or result.config.policy
    return (
        f"{what}: policy {policy}{scorer}, seed {result.config.seed}\n"
        f"trace {result.workload} on {result.cluster}, {protocol}"
    )


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_run_plots(result: SimulationResult, out: Path) -> list[Path]:
    """Allocation (and fragmentation) over time or demand, queue length over time (replay),
    and the JCT distribution; only the charts that have data."""
    plt = _pyplot()
    samples = result.timeline.sample_array()
    written: list[Path] = []
    fill = result.fill_demand is not None
    if len(samples):
        x = samples[:, 1] * PERCENT if fill else samples[:, 0] / SECONDS_PER_HOUR
        xlabel = "arrived GPU demand (% of capacity)" if fill else "time (h)"
        name = "allocation_vs_demand.png" if fill else "allocation_over_time.png"
        title = "GPU allocation" + (" vs arrived demand" if fill else " over time")
        fig, ax = plt.subplots(figsize=RUN_FIGSIZE_IN, layout="constrained")
        ax.plot(x, samples[:, 2] * PERCENT, label="GPU allocation ratio")
        ax.plot(x, samples[:, 5] * PERCENT, label="fragmentation (% of idle GPU)")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("%")
        ax.set_ylim(0, ALLOCATION_YMAX_PCT)
        written.append(_finish(fig, ax, run_title(result, title), out / name))
        if not fill:
            fig, ax = plt.subplots(figsize=RUN_FIGSIZE_IN, layout="constrained")
            ax.plot(x, samples[:, 3], label="running jobs")
            ax.plot(x, samples[:, 4], label="queued jobs")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("jobs")
            title = run_title(result, "Jobs running and queued")
            written.append(_finish(fig, ax, title, out / "queue_over_time.png"))
    jct = np.sort([r.jct_s for r in result.runs if r.status == "completed"])
    if jct.size:
        fig, ax = plt.subplots(figsize=RUN_FIGSIZE_IN, layout="constrained")
        ax.plot(jct / SECONDS_PER_HOUR, np.arange(1, jct.size + 1) / jct.size)
        ax.set_xscale("log")
        ax.set_xlabel("job completion time, submit to finish (h, log scale)")
        ax.set_ylabel("fraction of completed jobs")
        title = run_title(result, f"JCT distribution of {jct.size} completed jobs")
        written.append(_finish(fig, ax, title, out / "jct_cdf.png", legend=False))
    return written


def _finish(fig: Any, ax: Any, title: str, path: Path, *, legend: bool = True) -> Path:
    """Title, a legend below the axes (never over the curves), save, close."""
    ax.set_title(title, fontsize=TITLE_FONTSIZE)
    if legend:
        fig.legend(loc="outside lower center", ncols=2, frameon=False)
    fig.savefig(path, dpi=DPI)
    _pyplot().close(fig)
    return path


def write_sweep_plots(table: list[dict[str, Any]], out: Path) -> list[Path]:
    """One bar chart per metric in :data:`SWEEP_METRICS`: a bar per (policy, scorer, cluster)
    coloured by trace, its height the mean over seeds and its error bar one standard
    deviation over seeds, both said on the chart."""
    plt = _pyplot()
    written = []
    for metric, label, scale in SWEEP_METRICS:
        rows = [r for r in table if r.get(metric) is not None]
        if not rows:
            continue
        names = [
            f"{r['policy']}{'/' + r['scorer'] if r['scorer'] else ''}\n{r['cluster']}" for r in rows
        ]
        groups = sorted({r["trace"] for r in rows})
        width = max(SWEEP_MIN_WIDTH_IN, SWEEP_WIDTH_PER_BAR_IN * len(rows))
        fig, ax = plt.subplots(figsize=(width, SWEEP_HEIGHT_IN), layout="constrained")
        colours = plt.cm.tab10(np.linspace(0, 1, max(1, len(groups))))
        for i, r in enumerate(rows):
            err = r.get(f"{metric}_std")
            ax.bar(
                i,
                r[metric] * scale,
                yerr=None if err is None else err * scale,
                capsize=3,
                color=colours[groups.index(r["trace"])],
            )
        ax.set_xticks(range(len(rows)), names, rotation=60, ha="right", fontsize=SMALL_FONTSIZE)
        ax.set_ylabel(label)
        ax.set_xlabel("policy[/scorer], cluster", fontsize=SMALL_FONTSIZE)
        ax.set_title(sweep_title(label, rows), fontsize=TITLE_FONTSIZE)
        if len(groups) > 1:
            handles = [plt.Rectangle((0, 0), 1, 1, color=colours[i]) for i in range(len(groups))]
            fig.legend(
                handles,
                [short_trace(str(g)) for g in groups],
                loc="outside right upper",
                fontsize=SMALL_FONTSIZE,
                title="trace",
                title_fontsize=SMALL_FONTSIZE,
            )
        path = out / f"{metric}.png"
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
        written.append(path)
    return written


def sweep_title(label: str, rows: list[dict[str, Any]]) -> str:
    """The metric, what was compared (policies, traces, clusters) and what the bars mean."""
    metric = label.split(" (")[0]
    policies = sorted({r["policy"] + (f"/{r['scorer']}" if r["scorer"] else "") for r in rows})
    traces = sorted({short_trace(str(r["trace"])) for r in rows})
    clusters = sorted({str(r["cluster"]) for r in rows})
    runs = sorted({int(r.get("runs", 1)) for r in rows})
    seeds = "/".join(str(n) for n in runs)
    if runs == [1]:
        bars = "bars: one seed each (no error bars)"
    else:
        bars = f"bars: mean over {seeds} seeds; error bars: ±1 std over seeds"
    return (
        f"{metric}: {_listed('policies', policies)}\n"
        f"{_listed('traces', traces)} on {_listed('clusters', clusters)}\n{bars}"
    )


def short_trace(spec: str) -> str:
    """``FORMAT:file[#pod list]`` without the folders, which make titles unreadable."""
    fmt, sep, rest = spec.partition(":")
    path, hashed, pod_list = rest.partition("#")
    return f"{fmt}{sep}{Path(path).name or path}{hashed}{pod_list}"


def _listed(plural: str, names: list[str], most: int = 3) -> str:
    if len(names) <= most:
        return ", ".join(names)
    return f"{len(names)} {plural} ({', '.join(names[:most])}, ...)"
