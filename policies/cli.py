"""``phalanx policies``: every registered policy, one line each."""

from __future__ import annotations

import json

import click
from phalanx.policies.registry import KINDS, list_policies


@click.command(name="policies")
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    default=None,
    help="Only policies of this kind.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON list of {kind, name, description} objects.",
)
def command(kind: str | None, as_json: bool) -> None:
    """List the registered queue, scorer and preemption policies.

    Scorers combine by name with weights, e.g. "0.7*topology+0.3*fgd"; preemption policies
    chain, e.g. "priority+reclaim".
    """
    rows = [row for row in list_policies() if kind is None or row[0] == kind]
    if as_json:  # for scripts and UIs that offer the names, so they never parse the table
        fields = ("kind", "name", "description")
        click.echo(json.dumps([dict(zip(fields, row, strict=True)) for row in rows], indent=2))
        return
    kind_width = max(len(r[0]) for r in rows)
    name_width = max(len(r[1]) for r in rows)
    click.echo(f"{'KIND':<{kind_width}}  {'NAME':<{name_width}}  DESCRIPTION")
    for k, name, description in rows:
        click.echo(f"{k:<{kind_width}}  {name:<{name_width}}  {description}")
