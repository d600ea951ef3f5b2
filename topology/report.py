"""What ``phalanx topology show`` prints: a cluster's size, levels, domain sizes and costs.

:func:`cluster_summary` gives a JSON-able dict (infinite costs, between MIG slices, become
``null``); :func:`format_summary` renders it as a compact text report.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
from phalanx.topology.compiled import CompiledCluster
from phalanx.topology.model import NODE_LEVEL


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def cluster_summary(compiled: CompiledCluster) -> dict[str, Any]:
    cluster = compiled.cluster
    nodes = cluster.nodes
    usable_per_node = compiled.gpu_usable.sum(axis=1)
    levels = []
    for li, level_name in enumerate(compiled.level_names):
        lo, hi = (int(x) for x in compiled.level_domain_range[li])
        nodes_per_domain = np.bincount(compiled.node_domain[li] - lo, minlength=hi - lo)
        gpus_per_domain = np.bincount(
            compiled.node_domain[li] - lo, weights=compiled.gpu_count, minlength=hi - lo
        )
        fabric = cluster.levels[li - 1] if li else None
        levels.append(
            {
                "name": level_name,
                "cost": _finite(fabric.cost) if fabric else None,
                "nvlink": bool(fabric.nvlink) if fabric else False,
                "oversubscription": fabric.oversubscription if fabric else 1.0,
                "label": fabric.label if fabric else "",
                "domains": hi - lo,
                "nodes_per_domain": [int(nodes_per_domain.min()), int(nodes_per_domain.max())],
                "gpus_per_domain": [int(gpus_per_domain.min()), int(gpus_per_domain.max())],
            }
        )
    node_types: dict[tuple[int, str, float], list[int]] = {}
    for ni, node in enumerate(nodes):
        key = (int(compiled.node_shape[ni]), node.product, float(compiled.node_egress_cost[ni]))
        node_types.setdefault(key, []).append(ni)
    types = []
    for (shape, product, egress), members in node_types.items():
        first = nodes[members[0]]
        n = first.gpu_count
        pair = compiled.shape_pair_cost[shape][:n, :n]
        types.append(
            {
                "example": first.name,
                "nodes": len(members),
                "product": product,
                "gpus": n,
                "nvlink": first.nvlink.value,
                "egress_cost": _finite(egress),
                "pair_cost": [[_finite(v) for v in row] for row in pair],
            }
        )
    by_product: Counter[str] = Counter()
    for node in nodes:
        if node.gpus:
            by_product[node.product] += node.gpu_count
    return {
        "name": cluster.name,
        "nodes": len(nodes),
        "gpus": cluster.gpu_count,
        "usable_gpus": int(usable_per_node.sum()),
        "gpus_by_product": dict(sorted(by_product.items())),
        "levels": levels,
        "node_types": types,
    }


def _span(pair: list[int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}-{pair[1]}"


def _cost(value: float | None) -> str:
    return "inf" if value is None else f"{value:g}"


def format_summary(summary: dict[str, Any]) -> str:
    out = [
        f"cluster {summary['name']}: {summary['nodes']} nodes, {summary['gpus']} GPUs "
        f"({summary['usable_gpus']} usable)"
    ]
    for product, count in summary["gpus_by_product"].items():
        out.append(f"  {product:<32} {count:>7} GPUs")
    out.append("")
    header = ("level", "cost", "domains", "nodes/domain", "GPUs/domain", "label")
    rows = [header]
    for lvl in summary["levels"]:
        cost = "per GPU pair" if lvl["name"] == NODE_LEVEL else _cost(lvl["cost"])
        if lvl["nvlink"]:
            cost += " nvlink"
        if lvl["oversubscription"] > 1:
            cost += f" ({lvl['oversubscription']:g}:1)"
        rows.append(
            (
                lvl["name"],
                cost,
                str(lvl["domains"]),
                _span(lvl["nodes_per_domain"]),
                _span(lvl["gpus_per_domain"]),
                lvl["label"],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        out.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    for i, t in enumerate(summary["node_types"], start=1):
        out.append("")
        out.append(
            f"node type {i}: {t['nodes']} x {t['product'] or 'cpu-only'}, {t['gpus']} GPUs, "
            f"nvlink {t['nvlink']}, network cost {_cost(t['egress_cost'])} (e.g. {t['example']})"
        )
        if t["gpus"] > 1:
            out.extend(_matrix(t["pair_cost"]))
    return "\n".join(out)


def _matrix(pair: list[list[float | None]]) -> list[str]:
    cells = [[_cost(v) for v in row] for row in pair]
    width = max(len(str(len(pair) - 1)), *(len(c) for row in cells for c in row))
    lines = ["  " + " " * width + " " + " ".join(f"{g:>{width}}" for g in range(len(pair)))]
    for g, row in enumerate(cells):
        lines.append(f"  {g:>{width}} " + " ".join(f"{c:>{width}}" for c in row))
    return lines
