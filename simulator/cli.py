"""``phalanx simulate``: replay a trace through the scheduler and print its metrics."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import click
from phalanx.simulator.config import BIND_DELAY_DISTRIBUTIONS, SimulationConfig
from phalanx.simulator.data import SAMPLE_CLUSTER, SAMPLE_TRACE
from phalanx.simulator.fill import FGD_DEMAND
from phalanx.simulator.options import parse_options, progress_bar, reported_errors
from phalanx.simulator.slowdown import DEFAULT_INTENSITY, SlowdownModel
from phalanx.simulator.traces import FORMATS, TraceOptions, load_trace, split_spec

NEXT_POLICY = {"fifo": "backfill"}
"""After a run of one of these policies, the suggested next run tries the other."""
NEXT_QUEUE_POLICY, NEXT_QUEUE_FALLBACK = "backfill", "fifo"
NEXT_FILL_SCORER, NEXT_FILL_FALLBACK = "bestfit", "fgd"
NEXT_SEEDS = "1-3"
NEXT_REPORT_DIR = "report/"
NEXT_SWEEP_DIR = "sweep/"


@click.command(
    "simulate",
    epilog=(
        "Formats: " + ", ".join(FORMATS) + ". With no --trace the bundled Philly sample runs "
        f"on {SAMPLE_CLUSTER}. See docs/simulator.md."
    ),
)
@click.option("--trace", "trace_spec", metavar="FORMAT:PATH", help="Trace to replay.")
@click.option(
    "--cluster",
    metavar="PRESET|FILE",
    help="Preset (dgx-h100:64, philly:352...; philly:auto sizes Philly hosts to the trace's "
    "load as its node series says Philly was busy), cluster file (.yaml/.json), saved Kubernetes "
    "Node list (kubectl get nodes -o json) or openb node list (.csv); default: the trace's own.",
)
@click.option(
    "--policy",
    default="fifo",
    show_default=True,
    help="Queue policy. Under the fill protocol (openb, --demand) a scorer name is accepted "
    "here, since one pod at a time leaves nothing to order.",
)
@click.option("--scorer", help="Placement scorer, e.g. fgd, topology, 0.7*topology+0.3*fgd.")
@click.option("--preemption", help="Preemption policy, e.g. priority, reclaim, priority+reclaim.")
@click.option(
    "--permit",
    help="Permit plugin: link-hold holds a gang that fits only on slower links, for at most "
    "the run time they would cost it.",
)
@click.option("--policy-option", multiple=True, metavar="KEY=VALUE", help="Queue policy option.")
@click.option("--scorer-option", multiple=True, metavar="KEY=VALUE", help="Scorer option.")
@click.option(
    "--preemption-option", multiple=True, metavar="KEY=VALUE", help="Preemption policy option."
)
@click.option("--permit-option", multiple=True, metavar="KEY=VALUE", help="Permit plugin option.")
@click.option(
    "--solver", type=click.Choice(["fast", "exact", "auto"]), default="fast", show_default=True
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--demand",
    type=float,
    help="Fill protocol (FGD): the trace's jobs shuffled and topped up to F x GPU capacity, "
    f"one at a time, no departures, no retries (openb default {FGD_DEMAND}).",
)
@click.option("--replay", is_flag=True, help="openb: replay creation/deletion times instead.")
@click.option("--pod-list", help="openb: pod list name (default, cpu050, gpushare40...).")
@click.option("--node-list", help="openb: node list name (gpu_node, all_node).")
@click.option("--interval", type=float, help="Scheduling interval in s (default: event-driven).")
@click.option("--reserve-ttl", type=float, help="Reserve started gangs for this many s.")
@click.option("--bind-delay", type=float, default=0.0, help="Seconds from reservation to bind.")
@click.option(
    "--bind-delay-dist",
    type=click.Choice(BIND_DELAY_DISTRIBUTIONS),
    default="fixed",
    show_default=True,
    help="fixed: every gang binds --bind-delay s after its reservation; exponential: each pod "
    "binds after an exponential delay of that mean, the gang when its last pod has (a gang "
    "whose last pod misses the TTL loses its reservation and is queued again).",
)
@click.option(
    "--resume/--restart",
    "resume",
    default=None,
    help="A preempted job keeps its progress (--resume) or starts over (--restart). Default: "
    "the queue policy's assumption (tiresias and las resume, others restart).",
)
@click.option(
    "--restart-delay",
    type=float,
    default=0.0,
    show_default=True,
    help="Seconds every start (first or after a preemption) spends before the job progresses.",
)
@click.option("--slowdown/--no-slowdown", default=False, help="Stretch run times by placement.")
@click.option(
    "--default-intensity",
    type=float,
    default=DEFAULT_INTENSITY,
    show_default=True,
    help="Communication intensity of job classes the slowdown model does not know.",
)
@click.option("--oracle-estimates", is_flag=True, help="Tell the scheduler true run times.")
@click.option("--strict", is_flag=True, help="Fail on the first bad trace row.")
@click.option("--worker-type", help="gavel: GPU type of the throughput table (v100, p100, k80).")
@click.option("--gpu-profile", default="", help="sia: profile suffix (aws, rtx, dgx, quad).")
@click.option("--check-invariants", is_flag=True, help="Check the ledger after every cycle.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object of metrics.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Write reports here.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a TTY).")
def command(
    trace_spec: str | None,
    cluster: str | None,
    policy: str,
    scorer: str | None,
    preemption: str | None,
    permit: str | None,
    policy_option: tuple[str, ...],
    scorer_option: tuple[str, ...],
    preemption_option: tuple[str, ...],
    permit_option: tuple[str, ...],
    solver: str,
    seed: int,
    demand: float | None,
    replay: bool,
    pod_list: str | None,
    node_list: str | None,
    interval: float | None,
    reserve_ttl: float | None,
    bind_delay: float,
    bind_delay_dist: str,
    resume: bool | None,
    restart_delay: float,
    slowdown: bool,
    default_intensity: float,
    oracle_estimates: bool,
    strict: bool,
    worker_type: str | None,
    gpu_profile: str,
    check_invariants: bool,
    as_json: bool,
    out: Path | None,
    progress: bool | None,
) -> None:
    """Replay a GPU-cluster trace through the scheduler and report what happened."""
    from phalanx.simulator.clusters import resolve_cluster
    from phalanx.simulator.compile_notice import NOTICE, kernels_cold
    from phalanx.simulator.metrics import summarize
    from phalanx.simulator.report import glossary, metrics_table, write_outputs
    from phalanx.simulator.run import simulate

    with reported_errors():
        asked = (trace_spec, cluster)
        if trace_spec is None:
            trace_spec = SAMPLE_TRACE
            cluster = cluster or SAMPLE_CLUSTER
        fmt, _ = split_spec(trace_spec)
        if fmt == "openb" and demand is None and not replay:
            demand = FGD_DEMAND
        if replay and demand is not None:
            raise click.UsageError("--replay and --demand exclude each other")
        if not 0.0 <= default_intensity <= 1.0:
            raise click.BadParameter("must be within 0..1", param_hint="--default-intensity")
        config = SimulationConfig(
            policy=policy,
            policy_options=parse_options(policy_option, "--policy-option"),
            scorer=scorer,
            scorer_options=parse_options(scorer_option, "--scorer-option"),
            preemption=preemption,
            preemption_options=parse_options(preemption_option, "--preemption-option"),
            permit=permit,
            permit_options=parse_options(permit_option, "--permit-option"),
            solver=solver,
            seed=seed,
            scheduling_interval_s=interval,
            reserve_ttl_s=reserve_ttl,
            bind_delay_s=bind_delay,
            bind_delay_distribution=bind_delay_dist,
            resume_after_preemption=resume,
            restart_delay_s=restart_delay,
            slowdown=SlowdownModel(enabled=slowdown, default_intensity=default_intensity),
            oracle_estimates=oracle_estimates,
            check_invariants=check_invariants,
        )
        config.check()
        options = TraceOptions(
            strict=strict,
            seed=seed,
            pod_list=pod_list,
            node_list=node_list,
            replay=replay,
            worker_type=worker_type,
            gpu_profile=gpu_profile,
        )
        workload = load_trace(trace_spec, options)
        resolved = resolve_cluster(cluster, workload)
        if kernels_cold():
            click.echo(NOTICE, err=True)
        update, close = progress_bar("simulating", progress)
        try:
            result = simulate(workload, resolved, config, demand=demand, progress=update)
        finally:
            close()
        summary = summarize(result)
        if as_json:
            click.echo(json.dumps(summary, sort_keys=True))
        else:
            click.echo(metrics_table(summary))
        # On stderr, so that --json output stays one JSON object on stdout.
        for line in result.skipped.lines():
            click.echo(f"note: {line}", err=True)
        if out is not None:
            written = write_outputs(result, summary, out)
            if not as_json:
                click.echo(f"wrote {len(written)} files to {out} (start with report.md)")
        if not as_json:
            for line in glossary(summary):
                click.echo(line)
            click.echo("next: " + next_command(*asked, policy, demand is not None, out))


def next_command(
    trace_spec: str | None, cluster: str | None, policy: str, fill: bool, out: Path | None
) -> str:
    """What to try after this run: the same trace and cluster with files written (and, for
    FIFO, backfill), or, once files are written, a sweep comparing this policy with another
    over seeds. Under the fill protocol policies are scorers, so it compares with bestfit."""
    given = [
        f"{flag} {shlex.quote(value)}"
        for flag, value in (("--trace", trace_spec), ("--cluster", cluster))
        if value
    ]
    if out is None:
        other = NEXT_POLICY.get(policy, policy) if not fill else policy
        return (
            " ".join(["phalanx simulate", *given, f"--policy {other}", f"--out {NEXT_REPORT_DIR}"])
            + "   (per-job CSVs, plots and report.md)"
        )
    alternative = NEXT_FILL_SCORER if fill else NEXT_QUEUE_POLICY
    if policy == alternative:
        alternative = NEXT_FILL_FALLBACK if fill else NEXT_QUEUE_FALLBACK
    return (
        " ".join(
            [
                "phalanx sweep",
                *given,
                f"--policy {policy},{alternative}",
                f"--seeds {NEXT_SEEDS}",
                f"--out {NEXT_SWEEP_DIR}",
            ]
        )
        + "   (compare over seeds)"
    )
