"""The webhook over HTTP (dry-run backend on a real uvicorn server): replies, errors, limits,
metrics and the debug view."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from phalanx.extender.app import AppOptions, ExtenderApp
from phalanx.extender.config import ServeConfig
from phalanx.extender.rejection import REJECTION_KEY
from phalanx.extender.runtime import DryRunBackend, planner_factory
from phalanx.topology.presets import cluster_preset

from tests.fake_apiserver import kube_pod, phalanx_gang, post_binds_together, serve_app

NODES = [f"h100-{i:05d}" for i in range(4)]
BODY_LIMIT = 64 * 1024


@pytest.fixture
def server() -> Iterator[tuple[httpx.Client, DryRunBackend]]:
    backend = DryRunBackend(planner_factory(ServeConfig())(cluster_preset("dgx-h100:4")))
    app = ExtenderApp(backend, AppOptions(max_body_bytes=BODY_LIMIT, echo=True))
    with serve_app(app) as url, httpx.Client(base_url=url) as http:
        yield http, backend


def args(pod, names=NODES):
    return {"Pod": pod, "Nodes": None, "NodeNames": names}


def test_filter_prioritize_bind_round_trip(server):
    http, _ = server
    pods = [kube_pod(f"t-{i}", annotations=phalanx_gang("t", 2)) for i in range(2)]
    waiting = http.post("/filter", json=args(pods[0])).json()
    assert waiting["NodeNames"] == [] and set(waiting["FailedNodes"]) == {REJECTION_KEY}
    assert "1/2 members present" in waiting["FailedNodes"][REJECTION_KEY]
    binds = []
    for pod in reversed(pods):
        reply = http.post("/filter", json=args(pod))
        assert reply.status_code == 200 and "app;dur=" in reply.headers["server-timing"]
        (node,) = reply.json()["NodeNames"]
        scores = http.post("/prioritize", json=args(pod)).json()
        assert {s["Host"]: s["Score"] for s in scores}[node] == 10
        assert all(isinstance(s["Score"], int) and 0 <= s["Score"] <= 10 for s in scores)
        meta = pod["metadata"]
        binds.append(
            {"PodName": meta["name"], "PodNamespace": "ml", "Node": node, "PodUID": meta["uid"]}
        )
    assert post_binds_together(http, binds) == [{"Error": ""}] * 2
    state = http.get("/debug/state").json()
    assert state["gangs"][0]["phase"] == "bound" and state["binds_recorded"] == 2
    assert state["recent_binds"][0]["annotations"]["phalanx.io/gang-key"] == "ml/t"
    metrics = http.get("/metrics").text
    assert 'phalanx_extender_request_seconds_count{verb="filter"} 3.0' in metrics
    assert 'phalanx_gangs{phase="bound"} 1.0' in metrics
    assert "phalanx_gpu_allocation_ratio 0.5" in metrics


def test_nodes_mode_gets_node_objects_back(server):
    http, _ = server
    items = [{"metadata": {"name": n}, "status": {}} for n in NODES]
    reply = http.post("/filter", json={"Pod": kube_pod("n"), "Nodes": {"items": items}}).json()
    assert reply["NodeNames"] is None and len(reply["Nodes"]["items"]) == 1
    waiting = kube_pod("w-0", annotations=phalanx_gang("w", 2))
    reply = http.post("/filter", json={"Pod": waiting, "Nodes": {"items": items}}).json()
    assert reply["Nodes"]["items"] == [] and set(reply["FailedNodes"]) == {REJECTION_KEY}


@pytest.mark.parametrize(
    ("verb", "body", "status", "message"),
    [
        ("filter", b"{oops", 200, "not valid JSON"),
        ("filter", b'{"Pod": [], "NodeNames": []}', 200, "Pod must be a Pod object"),
        ("filter", b'{"Pod": {"metadata": {"name": "x"}}, "NodeNames": {}}', 200, "NodeNames"),
        ("bind", b'{"PodName": 1}', 200, "PodName must be"),
        ("prioritize", b"[]", 400, "must be a JSON object"),
        (
            "preempt",
            b'{"Pod": {"metadata": {"name": "x"}}, "NodeNameToMetaVictims": 3}',
            400,
            "NodeNameToMetaVictims",
        ),
    ],
)
def test_bad_input_gets_a_clear_error_and_changes_nothing(server, verb, body, status, message):
    http, backend = server
    before = backend.planner.compiled.mutable_state_bytes()
    reply = http.post(f"/{verb}", content=body)
    assert reply.status_code == status
    assert message in reply.json()["Error"]
    assert backend.planner.compiled.mutable_state_bytes() == before
    assert backend.planner.pods == {}


def test_huge_body_is_refused_before_it_is_read(server):
    http, backend = server
    huge = b'{"Pod": {"metadata": {"name": "x"}}, "NodeNames": ["' + b"a" * BODY_LIMIT + b'"]}'
    reply = http.post("/filter", content=huge)
    assert reply.status_code == 413 and "limit" in reply.json()["Error"]
    assert backend.planner.pods == {}


def test_unknown_nodes_and_paths(server):
    http, _ = server
    reply = http.post("/filter", json=args(kube_pod("u"), ["nowhere"])).json()
    assert reply["NodeNames"] == [] and "nowhere" in reply["FailedNodes"]
    assert http.post("/nonsense", json={}).status_code == 404
    assert http.put("/filter", json={}).status_code == 405
    bind = {"PodName": "ghost", "PodNamespace": "ml", "PodUID": "", "Node": NODES[0]}
    assert "unknown to Phalanx" in http.post("/bind", json=bind).json()["Error"]


def test_health_ready_and_echo(server):
    http, _ = server
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").json()["ready"] is True
    assert http.post("/echo", content=b'{"a": 1}').content == b'{"a": 1}'
