"""The ``phalanx`` command: a root group whose subcommands load on first use.

The root sits at the top of the ``phalanx`` namespace and names its subcommands as import
strings, so importing the core never drags in the simulator, the webhook server or the
benchmarks: each package owns its own subcommand module, imported only when that subcommand runs.
"""

from __future__ import annotations

import importlib

import click

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "topology": ("phalanx.topology.cli", "Inspect, validate and discover cluster topologies."),
    "place": ("phalanx.scheduler.cli", "Where would this gang go, and why (or why not)?"),
    "policies": ("phalanx.policies.cli", "List the registered scheduling policies."),
    "simulate": ("phalanx.simulator.cli", "Replay a GPU-cluster trace through the scheduler."),
    "sweep": (
        "phalanx.simulator.sweep_cli",
        "Run policies x traces x seeds x clusters and compare.",
    ),
    "serve": ("phalanx.extender.cli", "Run the kube-scheduler extender webhook."),
    "status": ("phalanx.extender.status_cli", "Queues and pending gangs of a running extender."),
    "explain": (
        "phalanx.extender.explain_cli",
        "Why a gang or pod waits, or why it runs where it runs.",
    ),
    "bench": ("phalanx.bench.cli", "Run a benchmark report (without a name: list them)."),
}


class LazyGroup(click.Group):
    """A click group that imports ``<module>.command`` only when the subcommand is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = SUBCOMMANDS.get(cmd_name)
        if entry is None:
            return None
        module = importlib.import_module(entry[0])
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SUBCOMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="phalanx")
def main() -> None:
    """Phalanx: gang scheduling and topology-aware GPU placement for Kubernetes."""
