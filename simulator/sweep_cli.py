"""``phalanx sweep``: policies x traces x seeds x cluster variants, one comparison table."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from phalanx.simulator.config import SimulationConfig
from phalanx.simulator.data import SAMPLE_CLUSTER, SAMPLE_TRACE
from phalanx.simulator.fill import FGD_DEMAND
from phalanx.simulator.options import parse_options, reported_errors
from phalanx.simulator.plots import short_trace
from phalanx.simulator.slowdown import SlowdownModel
from phalanx.simulator.traces import TraceOptions, split_spec


@click.command("sweep")
@click.option("--trace", "traces", multiple=True, metavar="FORMAT:PATH", help="Repeatable.")
@click.option(
    "--policy", "policies", multiple=True, help="Queue policy (repeatable, or NAME,NAME)."
)
@click.option(
    "--scorer", "scorers", multiple=True, help="Placement scorer (repeatable, or NAME,NAME)."
)
@click.option(
    "--cluster",
    "clusters",
    multiple=True,
    metavar="[LABEL=]PRESET|FILE",
    help="Cluster variant (repeatable): preset, cluster file, Kubernetes Node list (.json/"
    ".yaml) or openb node list (.csv); default: each trace's own.",
)
@click.option("--seeds", default="0", show_default=True, help="e.g. 42-51 or 1,2,3.")
@click.option("--demand", type=float, help="Fill protocol target (openb default 1.3).")
@click.option(
    "--pod-list", "pod_lists", multiple=True, help="openb pod lists (repeatable, or NAME,NAME)."
)
@click.option("--policy-option", multiple=True, metavar="KEY=VALUE")
@click.option("--slowdown/--no-slowdown", default=False)
@click.option("--interval", type=float, help="Scheduling interval in s.")
@click.option("--strict", is_flag=True, help="Fail on the first bad trace row.")
@click.option("--workers", type=int, help="Local processes (default: all cores).")
@click.option("--ray", "ray_address", metavar="ADDRESS", help="Run on this Ray cluster instead.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("sweep-out"),
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison table as JSON.")
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar of finished runs on stderr (default: only on a terminal).",
)
def command(
    traces: tuple[str, ...],
    policies: tuple[str, ...],
    scorers: tuple[str, ...],
    clusters: tuple[str, ...],
    seeds: str,
    demand: float | None,
    pod_lists: tuple[str, ...],
    policy_option: tuple[str, ...],
    slowdown: bool,
    interval: float | None,
    strict: bool,
    workers: int | None,
    ray_address: str | None,
    out: Path,
    as_json: bool,
    progress: bool | None,
) -> None:
    """Run every combination and write runs.csv, comparison.csv/.md and plots to --out."""
    from phalanx.simulator.compile_notice import NOTICE, kernels_cold
    from phalanx.simulator.sweep import (
        aggregate,
        comparison_markdown,
        expand,
        parse_seeds,
        run_local,
        run_ray,
        skipped_notes,
        write_sweep,
    )

    with reported_errors():
        policies, scorers, pod_lists = _names(policies), _names(scorers), _names(pod_lists)
        if not traces:
            traces = (SAMPLE_TRACE,)
            clusters = clusters or (SAMPLE_CLUSTER,)
        formats = {split_spec(t)[0] for t in traces}
        if demand is None and formats == {"openb"}:
            demand = FGD_DEMAND
        base = SimulationConfig(
            policy_options=parse_options(policy_option, "--policy-option"),
            scheduling_interval_s=interval,
            slowdown=SlowdownModel(enabled=slowdown),
        )
        base.check()
        specs = expand(
            traces,
            policies or ("fifo",),
            parse_seeds(seeds),
            clusters or (None,),
            base=base,
            trace_options=TraceOptions(strict=strict),
            scorers=scorers or (None,),
            demand=demand,
            pod_lists=pod_lists or (None,),
        )
        if kernels_cold():
            click.echo(NOTICE, err=True)
        report, close = run_progress(len(specs), progress)
        try:
            if ray_address:
                rows = run_ray(specs, ray_address, on_done=report)
            else:
                rows = run_local(specs, workers, on_done=report)
        finally:
            close()
        for line in skipped_notes(rows):
            click.echo(f"note: {line}", err=True)
        table = aggregate(rows)
        write_sweep(rows, table, out)
        if as_json:
            click.echo(json.dumps(table, sort_keys=True))
        else:
            click.echo(comparison_markdown(table))
            click.echo(f"wrote runs.csv, comparison.csv, comparison.md and plots to {out}")


def run_progress(
    total: int, enabled: bool | None
) -> tuple[Callable[[dict[str, Any]], None] | None, Callable[[], None]]:
    """A tqdm bar of finished runs on stderr, shown on a terminal unless forced either way
    (``--progress`` keeps it when stderr is piped to a log, where a sweep of hours otherwise
    says nothing), as an ``(on_done, close)`` pair; the bar's note names the last run."""
    show = sys.stderr.isatty() if enabled is None else enabled
    if not show:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=total, desc="sweep", unit="run", file=sys.stderr)

    def on_done(row: dict[str, Any]) -> None:
        scorer = f"/{row['scorer']}" if row["scorer"] else ""
        bar.set_postfix_str(
            f"{short_trace(str(row['trace']))} {row['cluster']} {row['policy']}{scorer} "
            f"seed {row['seed']}: {row['wall_s']:.1f} s",
            refresh=False,
        )
        bar.update(1)

    return on_done, bar.close


def _names(values: tuple[str, ...]) -> tuple[str, ...]:
    """Repeated options and comma-separated lists alike (``--policy fifo,backfill``); names
    of policies, scorers and pod lists never contain commas."""
    return tuple(n.strip() for v in values for n in v.split(",") if n.strip())
