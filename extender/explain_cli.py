"""``phalanx explain NAMESPACE/POD|NAMESPACE/GROUP``: why one gang waits, or why it is where it
is, from a running extender's ``/debug/explain``.

The name is tried as a gang first and then as a pod, so both the group's name and any member
pod's name work.
"""

from __future__ import annotations

from typing import Any

import click
from phalanx.extender.debug_client import (
    EXIT_BAD_INPUT,
    Server,
    ServerError,
    connect,
    fail,
    print_json,
    server_options,
)

NOT_FOUND = 404


@click.command(name="explain")
@click.argument("name")
@server_options
def command(
    name: str, server: str, ca: str | None, cert: str | None, key: str | None, as_json: bool
) -> None:
    """Why gang or pod NAME (NAMESPACE/NAME) waits, or why it runs where it runs."""
    if name.count("/") != 1 or not all(name.split("/")):
        fail(f"{name}: expected NAMESPACE/POD or NAMESPACE/GROUP", EXIT_BAD_INPUT)
    try:
        doc = lookup(connect(server, ca, cert, key), name)
    except ServerError as exc:
        fail(str(exc))
    if as_json:
        print_json(doc)
    else:
        click.echo("\n".join(render(doc)))


def lookup(server: Server, name: str) -> dict[str, Any]:
    """The gang named ``name``, else the gang of the pod named ``name``."""
    try:
        return server.get("/debug/explain", gang=name)
    except ServerError as exc:
        if exc.status != NOT_FOUND:
            raise
    return server.get("/debug/explain", pod=name)


def render(doc: dict[str, Any]) -> list[str]:
    """The explanation as text lines."""
    where = f"queue {doc['queue']}"
    if doc.get("position"):
        where += f" at position {doc['position']}"
    lines = [
        f"gang {doc['key']} ({doc['source']}): {doc['phase']}, {where}, tenant {doc['tenant']}, "
        f"priority {doc['priority']}",
        f"  members {doc['members']} present (quorum {doc['quorum']}), {doc['bound']} bound; "
        f"holds {doc['gpus_held']:g} GPUs, waits for {doc['gpus_wanted']:g}",
    ]
    if doc.get("pod"):
        lines.insert(0, f"pod {doc['pod']} belongs to gang {doc['key']}")
    if doc["phase"] == "pending":
        lines += [
            f"  waiting: {doc['code'] or 'not yet tried by a scheduling cycle'}",
            f"    {doc['message'] or '-'}",
        ]
        if doc.get("blocking"):
            lines.append(f"    blocked by: {doc['blocking']}")
        lines.append(f"    would run if: {doc['would_run_if']}")
    if "start_latency_s" in doc:
        lines.append(f"  started {doc['start_latency_s']:g} s after its first member was seen")
    for plan in doc.get("plans", []):
        cost = plan["cost"]
        terms = " + ".join(f"{k} {v:g}" for k, v in cost.items() if k != "total")
        expires = plan["expires_in_s"]
        held = f", expires in {expires:g} s" if expires is not None else ""
        lines += [
            f"  plan {plan['plan']}: {plan['phase']}{held}, domain {plan['domain']} "
            f"(level {plan['level']}), "
            f"solver {plan['solver']}",
            f"    cost {cost['total']:g} = {terms}",
        ]
        for m in plan["members"]:
            state = "bound" if m["bound"] else "reserved"
            gpus = ",".join(str(g) for g in m["gpus"])
            lines.append(f"    rank {m['rank']} {m['pod']} -> {m['node']} GPUs {gpus} ({state})")
    return lines
