"""``kubectl-phalanx``: the kubectl plugin (``kubectl phalanx status|explain``), the same
commands as ``phalanx status`` and ``phalanx explain``, for operators who live in kubectl."""

from __future__ import annotations

import click
from phalanx.extender import explain_cli, status_cli


@click.group(name="kubectl-phalanx", context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Phalanx's view of the cluster: queues, pending gangs and why one gang waits."""


main.add_command(status_cli.command)
main.add_command(explain_cli.command)
