"""Compile the request path before serving it.

The placement engine, the ledger, the cost and the node-name tables are numba kernels, cached
on disk after their first compile. On a machine where that cache is cold (a new image, a fresh
checkout) compiling them takes seconds (about 10 s on two cores), and whichever request first
reaches a kernel would pay it: kube-scheduler's filter would time out, or a bind barrier would
expire. So ``phalanx serve`` runs one small gang through a throwaway planner built with the
configured policies (a filter of the full wire request, prioritize, bind, the pods' deletion)
before it listens.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import orjson
from phalanx.extender.args_decoder import ExtenderArgsDecoder
from phalanx.extender.binding import RecordingBinder
from phalanx.extender.decision_log import LOGGER_NAME
from phalanx.extender.planner import Planner
from phalanx.scheduler.free_state_buckets import BUILD_AFTER_QUERIES
from phalanx.scheduler.kernels import warm_up as warm_up_placement_kernels
from phalanx.topology.model import Cluster
from phalanx.topology.presets import cluster_preset

log = logging.getLogger(__name__)

WARM_UP_CLUSTER = "dgx-h100:4"
WARM_UP_MEMBERS = 2
NAMESPACE = "phalanx-warm-up"


def _pod(name: str, gpus: str) -> dict:
    return {
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "uid": f"warm-up-{name}",
            "annotations": {
                "phalanx.io/gang": "warm-up",
                "phalanx.io/gang-size": str(WARM_UP_MEMBERS),
            },
        },
        "spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": gpus}}}]},
        "status": {"phase": "Pending"},
    }


def warm_up(make_planner: Callable[[Cluster], Planner]) -> float:
    """Run one gang through a throwaway planner; returns the seconds it took. Its decisions
    are not logged (they are not the cluster's)."""
    decisions = logging.getLogger(LOGGER_NAME)
    was_disabled, decisions.disabled = decisions.disabled, True
    try:
        return _run(make_planner)
    finally:
        decisions.disabled = was_disabled


def _run(make_planner: Callable[[Cluster], Planner]) -> float:
    start = time.perf_counter()
    warm_up_placement_kernels()
    cluster = cluster_preset(WARM_UP_CLUSTER)
    planner = make_planner(cluster)
    names = orjson.dumps([n.name for n in cluster.nodes])
    decode = ExtenderArgsDecoder()
    binder = RecordingBinder()
    members = [f"w-{i}" for i in range(WARM_UP_MEMBERS)]
    for name in members:
        planner.observe_pod(_pod(name, "8"))
    placed = {}
    for name in members:
        body = b'{"Pod":' + orjson.dumps(_pod(name, "8")) + b',"NodeNames":' + names + b"}"
        args = decode(body)
        decision = planner.filter(args.pod, args.node_names)
        planner.prioritize(args.pod, decision.passing or args.node_names)
        if decision.passing:
            placed[name] = decision.passing[0]
    for name, node in placed.items():
        planner.bind(NAMESPACE, name, f"warm-up-{name}", node, binder)
    for name in placed:
        # deleted rather than Succeeded: the policies are the server's own objects, and a
        # completion would teach their run time estimates (SJF's, link-hold's) a 0 s run
        planner.forget_pod(NAMESPACE, name, f"warm-up-{name}")
    # lone pods, as many as it takes for one member's placement to be read from the nodes
    # grouped by free state (built at a state's third question) and the groups caught up
    for i in range(BUILD_AFTER_QUERIES + 1):
        lone = _pod(f"lone-{i}", "1")
        lone["metadata"]["annotations"] = {}
        planner.filter(lone, list(planner.compiled.node_names))
    seconds = time.perf_counter() - start
    log.info("request path compiled (or loaded from the cache) in %.1f s", seconds)
    return seconds
