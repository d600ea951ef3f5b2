"""``phalanx status`` / ``phalanx explain`` (and ``kubectl-phalanx``) against a dry-run
extender served in process: the read-only endpoints /debug/queue and /debug/explain, their
text and JSON output, and the per-queue metrics they share their numbers with."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from click.testing import CliRunner
from phalanx.extender.app import ExtenderApp
from phalanx.extender.config import ServeConfig
from phalanx.extender.kubectl_plugin import main as kubectl_phalanx
from phalanx.extender.runtime import DryRunBackend, planner_factory
from phalanx.topology.presets import cluster_preset

from phalanx.cli import main as phalanx
from tests.fake_apiserver import kube_pod, phalanx_gang, post_binds_together, serve_app

NODES = [f"h100-{i:05d}" for i in range(4)]


def args(pod):
    return {"Pod": pod, "Nodes": None, "NodeNames": NODES}


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, httpx.Client]]:
    """A 3 x 8 gang placed and bound on 4 nodes of 8 GPUs, a 2 x 8 gang waiting for room,
    a 2 x 8 gang with one member of two."""
    backend = DryRunBackend(planner_factory(ServeConfig())(cluster_preset("dgx-h100:4")))
    with serve_app(ExtenderApp(backend)) as url, httpx.Client(base_url=url) as http:
        placed = [kube_pod(f"a-{i}", annotations=phalanx_gang("a", 3)) for i in range(3)]
        for pod in placed:
            http.post("/filter", json=args(pod))
        binds = []
        for pod in placed:
            (node,) = http.post("/filter", json=args(pod)).json()["NodeNames"]
            meta = pod["metadata"]
            binds.append(
                {"PodName": meta["name"], "PodNamespace": "ml", "PodUID": meta["uid"], "Node": node}
            )
        assert post_binds_together(http, binds) == [{"Error": ""}] * 3
        for i in range(2):
            http.post("/filter", json=args(kube_pod(f"b-{i}", annotations=phalanx_gang("b", 2))))
        http.post("/filter", json=args(kube_pod("c-0", annotations=phalanx_gang("c", 2))))
        yield url, http


def test_debug_queue_lists_pending_gangs_in_order_with_reasons(server):
    _, http = server
    doc = http.get("/debug/queue").json()
    assert doc["policy"] == "fifo" and doc["gpus"] == {"total": 32, "free": 8}
    assert doc["phases"] == {"pending": ["ml/b", "ml/c"], "reserved": [], "bound": ["ml/a"]}
    (queue,) = doc["queues"]
    assert queue["name"] == "default"
    assert [(g["key"], g["position"], g["code"]) for g in queue["pending"]] == [
        ("ml/b", 1, "capacity"),
        ("ml/c", 2, "waiting_for_members"),
    ]
    (tenant,) = doc["tenants"]
    assert tenant["tenant"] == "ml" and tenant["gpus_in_use"] == 24
    assert tenant["gpus_waiting"] == 24  # ml/c: one member of two present so far


def test_debug_explain_by_gang_and_by_pod(server):
    _, http = server
    waiting = http.get("/debug/explain", params={"gang": "ml/b"}).json()
    assert waiting["phase"] == "pending" and waiting["code"] == "capacity"
    assert waiting["message"].startswith("gang ml/b [capacity]: no capacity now")
    assert "16 GPUs free at once" in waiting["would_run_if"]
    placed = http.get("/debug/explain", params={"pod": "ml/a-1"}).json()
    assert placed["key"] == "ml/a" and placed["phase"] == "bound" and placed["pod"] == "ml/a-1"
    (plan,) = placed["plans"]
    assert len(plan["nodes"]) == 3 and plan["solver"] == "fast" and plan["cost"]["total"] > 0
    assert all(m["bound"] for m in plan["members"]) and placed["start_latency_s"] >= 0
    assert http.get("/debug/explain", params={"gang": "ml/nope"}).status_code == 404
    assert http.get("/debug/explain").status_code == 400


def test_status_command_text_and_json(server):
    url, _ = server
    result = CliRunner().invoke(phalanx, ["status", "--server", url])
    assert result.exit_code == 0, result.output
    assert "queue default (2 pending)" in result.output and "capacity" in result.output
    assert "bound: ml/a" in result.output
    result = CliRunner().invoke(phalanx, ["status", "--server", url, "--json"])
    assert json.loads(result.output)["phases"]["bound"] == ["ml/a"]


def test_explain_command_takes_a_gang_or_a_pod(server):
    url, _ = server
    result = CliRunner().invoke(phalanx, ["explain", "ml/b", "--server", url])
    assert result.exit_code == 0, result.output
    assert "waiting: capacity" in result.output and "would run if:" in result.output
    result = CliRunner().invoke(kubectl_phalanx, ["explain", "ml/a-0", "--server", url])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("pod ml/a-0 belongs to gang ml/a")
    assert "rank 0 a-0 -> h100-" in result.output and "cost " in result.output
    result = CliRunner().invoke(kubectl_phalanx, ["explain", "ml/b", "--json", "--server", url])
    assert json.loads(result.output)["position"] == 1
    result = CliRunner().invoke(kubectl_phalanx, ["status", "--server", url])
    assert result.exit_code == 0 and "queue default" in result.output


def test_explain_errors(server):
    url, _ = server
    missing = CliRunner().invoke(phalanx, ["explain", "ml/nope", "--server", url])
    assert missing.exit_code == 1 and "no pod ml/nope is known" in missing.output
    bad = CliRunner().invoke(phalanx, ["explain", "nope", "--server", url])
    assert bad.exit_code == 2 and "expected NAMESPACE/POD" in bad.output
    down = CliRunner().invoke(phalanx, ["status", "--server", "http://127.0.0.1:9"])
    assert down.exit_code == 1 and "cannot reach the extender" in down.output
    half = CliRunner().invoke(phalanx, ["status", "--server", url, "--cert", "c.pem"])
    assert half.exit_code == 2 and "--cert and --key go together" in half.output


def test_queue_metrics(server):
    _, http = server
    metrics = http.get("/metrics").text
    pending = 'phalanx_queue_pending_gangs{queue="default",reason="capacity",tenant="ml"} 1.0'
    assert pending in metrics
    assert 'phalanx_queue_pending_gpus{queue="default",reason="capacity",tenant="ml"} 16.0' in (
        metrics
    )
    assert 'phalanx_queue_gpus_in_use{queue="default",tenant="ml"} 24.0' in metrics
    assert "phalanx_gang_start_latency_seconds_count 1.0" in metrics
    assert "phalanx_placement_cost_count 1.0" in metrics
    assert "phalanx_reservations 0.0" in metrics
