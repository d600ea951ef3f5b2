"""``phalanx bench [REPORT [ARGS...]]``: run one of the benchmark reports behind the README.

Each report is a ``python -m phalanx.bench.<module>`` program with its own argparse options;
this command only names them, so a newcomer finds them from ``phalanx --help`` and the options
stay documented in one place (``phalanx bench REPORT --help``). The pytest-benchmark suites
(``bench/bench_*.py``) run under pytest, not here.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

import click

EXIT_BAD_INPUT = 2
REPORTS: dict[str, tuple[str, str]] = {
    "placement": (
        "phalanx.bench.placement_report",
        "Fast path against first fit, node-count scaling, numba kernel timings.",
    ),
    "optimality": (
        "phalanx.bench.optimality",
        "The fast path's cost gap against CP-SAT on generated instances.",
    ),
    "philly": (
        "phalanx.bench.philly_run",
        "The whole Philly slice through the simulator, timed (needs the public trace).",
    ),
    "policies": (
        "phalanx.bench.policy_table",
        "Queue policies side by side on a Philly slice on philly:auto (needs the public trace).",
    ),
    "topology-across-nodes": (
        "phalanx.bench.topology_across_nodes",
        "Multi-node gangs on a rail-fat-tree: topology against binpack (slowdown, JCT).",
    ),
    "sia-fairness": (
        "phalanx.bench.sia_fairness",
        "Worst finish-time rho on the 8 Sia Philly workloads (needs the public traces).",
    ),
    "fgd": (
        "phalanx.bench.fgd_table",
        "The FGD paper's allocation table, reproduced (needs the public openb trace).",
    ),
    "extender-load": (
        "phalanx.bench.extender_load",
        "Load generator playing kube-scheduler against 'phalanx serve --dry-run'.",
    ),
    "fuzz-extender": (
        "phalanx.bench.fuzz_extender",
        "Hostile requests for every verb, in process: status codes, tracebacks, ledger check.",
    ),
}
"""Report name -> (module with a ``main(argv)``, one line for the listing)."""


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_BAD_INPUT)


def report_listing() -> str:
    """The reports, one per line, for ``phalanx bench`` without a report name."""
    width = max(len(name) for name in REPORTS)
    lines = [f"{name:<{width}}  {REPORTS[name][1]}" for name in REPORTS]
    lines.append("run one: phalanx bench REPORT [ARGS...]; options: phalanx bench REPORT --help")
    return "\n".join(lines)


def run_report(name: str, args: Sequence[str]) -> int:
    """Run report ``name`` with ``args`` and return its exit status.

    ``sys.argv[0]`` is set for the call so the report's argparse usage line reads
    ``phalanx bench NAME`` rather than the bare program name.
    """
    module = importlib.import_module(REPORTS[name][0])
    saved = sys.argv
    sys.argv = [f"phalanx bench {name}", *args]
    try:
        status = module.main(list(args))
    except SystemExit as exc:  # argparse's --help and usage errors
        status = exc.code
    finally:
        sys.argv = saved
    if status is None:
        return 0
    if isinstance(status, int):
        return status
    click.echo(f"error: {status}", err=True)
    return EXIT_BAD_INPUT


@click.command(
    name="bench",
    context_settings={
        "ignore_unknown_options": True,
        "allow_interspersed_args": False,
        "help_option_names": ["-h", "--help"],
    },
)
@click.argument("report", required=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def command(report: str | None, args: tuple[str, ...]) -> None:
    """Run a benchmark report (REPORT: placement, optimality, philly, fgd, extender-load);
    without REPORT, list them. ARGS go to the report: phalanx bench placement --quick."""
    if report is None:
        click.echo(report_listing())
        return
    if report not in REPORTS:
        _fail(f"unknown report {report!r}; known: {', '.join(REPORTS)}")
    sys.exit(run_report(report, args))
