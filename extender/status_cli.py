"""``phalanx status``: what a running extender holds and who waits, from ``/debug/queue``.

Queues with their pending gangs in the queue policy's order (position, tenant, GPUs, reason
code and message), tenants' GPUs in use against their fair share or their queue's guarantee
where the policy has one, and the gangs by phase.
"""

from __future__ import annotations

from typing import Any

import click
from phalanx.extender.debug_client import ServerError, connect, fail, print_json, server_options


@click.command(name="status")
@server_options
def command(server: str, ca: str | None, cert: str | None, key: str | None, as_json: bool) -> None:
    """Queues, pending gangs in order, tenants' usage and gangs by phase of a running
    extender."""
    try:
        doc = connect(server, ca, cert, key).get("/debug/queue")
    except ServerError as exc:
        fail(str(exc))
    if as_json:
        print_json(doc)
    else:
        click.echo("\n".join(render(doc, server)))


def render(doc: dict[str, Any], server: str) -> list[str]:
    """The status report as text lines."""
    gpus = doc.get("gpus", {})
    phases = doc.get("phases", {})
    counts = ", ".join(f"{len(keys)} {phase}" for phase, keys in phases.items())
    lines = [
        f"Phalanx at {server}: queue policy {doc.get('policy')}, "
        f"{gpus.get('free', 0)} of {gpus.get('total', 0)} GPUs free",
        f"gangs: {counts or 'none'}",
    ]
    for queue in doc.get("queues", []):
        lines += ["", f"queue {queue['name']} ({len(queue['pending'])} pending)"]
        rows = [("POS", "GANG", "TENANT", "GPUS", "REASON", "BLOCKED BY")]
        rows += [
            (
                str(g["position"]),
                g["key"],
                g["tenant"],
                f"{g['gpus_wanted']:g}",
                g["code"] or "-",
                g["blocking"] or "-",
            )
            for g in queue["pending"]
        ]
        lines += _table(rows)
    if doc.get("tenants"):
        lines += ["", "tenants"]
        rows = [("TENANT", "GPUS IN USE", "WAITING", "DOMINANT SHARE", "FAIR SHARE")]
        for t in doc["tenants"]:
            fair = f"{t['fair_share']:.1%}" if "fair_share" in t else "-"
            rows.append(
                (
                    t["tenant"],
                    f"{t['gpus_in_use']:g}",
                    f"{t['gpus_waiting']:g}",
                    f"{t['dominant_share']:.1%}",
                    fair,
                )
            )
        lines += _table(rows)
    if doc.get("queue_quotas"):
        lines += ["", "queue quotas"]
        rows = [("QUEUE", "GPUS IN USE", "GUARANTEED", "LIMIT")]
        for q in doc["queue_quotas"]:
            rows.append(
                (
                    q["queue"],
                    f"{q['gpus_in_use']:g}",
                    _gpus(q["guaranteed_gpus"]),
                    _gpus(q["limit_gpus"]),
                )
            )
        lines += _table(rows)
    for phase in ("reserved", "bound"):
        if phases.get(phase):
            lines += ["", f"{phase}: {', '.join(phases[phase])}"]
    return lines


def _gpus(value: float | None) -> str:
    return "unlimited" if value is None else f"{value:g}"


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
