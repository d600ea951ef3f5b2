"""deploy/grafana/phalanx-dashboard.json: valid JSON, and every metric its PromQL queries use
is exported by a running (dry-run, in-process) extender's /metrics once a gang is placed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
from phalanx.extender.app import ExtenderApp
from phalanx.extender.config import PolicyConfig, ServeConfig
from phalanx.extender.runtime import DryRunBackend, planner_factory
from phalanx.topology.presets import cluster_preset

from tests.fake_apiserver import kube_pod, phalanx_gang, post_binds_together, serve_app

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "phalanx-dashboard.json"
NODES = [f"h100-{i:05d}" for i in range(4)]
POLICY_ONLY = {"phalanx_queue_guaranteed_gpus"}
"""Series only a quota-tree queue policy has; the family is declared (``# TYPE``) regardless."""
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or"}
_KEYWORDS |= {"unless", "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads: identifiers that are not functions (followed
    by '('), label lists (after by/without), matchers ({...}), ranges ([...]) or keywords."""
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\$\w+", "", expr)
    expr = re.sub(r"(?<![A-Za-z0-9_:])\d[\w.]*", "", expr)  # numbers and durations (5m)
    names = set()
    for match in _IDENT.finditer(expr):
        rest = expr[match.end() :].lstrip()
        if rest.startswith("(") or match.group() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def test_metric_names_of_promql():
    expr = (
        'histogram_quantile(0.9, sum by (le) (rate(x_bucket{verb="f"}[$__rate_interval])))'
        " / scalar(y) + z offset 5m"
    )
    assert metric_names(expr) == {"x_bucket", "y", "z"}


def test_dashboard_queries_only_exported_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = set().union(*(metric_names(e) for e in exprs))
    assert used and all(name.startswith("phalanx_") for name in used), used
    config = ServeConfig(policies=PolicyConfig(queue="drf"))
    backend = DryRunBackend(planner_factory(config)(cluster_preset("dgx-h100:4")))
    with serve_app(ExtenderApp(backend)) as url, httpx.Client(base_url=url) as http:
        pods = [kube_pod(f"a-{i}", annotations=phalanx_gang("a", 3)) for i in range(3)]
        pods += [kube_pod(f"b-{i}", annotations=phalanx_gang("b", 2)) for i in range(2)]
        for pod in pods:
            http.post("/filter", json={"Pod": pod, "NodeNames": NODES})
        binds = []
        for pod in pods[:3]:
            reply = http.post("/filter", json={"Pod": pod, "NodeNames": NODES}).json()
            meta = pod["metadata"]
            binds.append(
                {
                    "PodName": meta["name"],
                    "PodNamespace": "ml",
                    "PodUID": meta["uid"],
                    "Node": reply["NodeNames"][0],
                }
            )
        assert post_binds_together(http, binds) == [{"Error": ""}] * 3
        text = http.get("/metrics").text
    sampled = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
    declared = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert used - POLICY_ONLY <= sampled, sorted(used - POLICY_ONLY - sampled)
    assert declared >= POLICY_ONLY
