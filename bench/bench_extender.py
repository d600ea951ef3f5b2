"""Extender hot path: ``filter`` + ``prioritize`` for one member, in ``NodeNames`` mode.

Measured at the request-body level (parse, plan, reply, encode), so the figure is the
server-side work of one request without the HTTP stack;
``python -m phalanx.bench.extender_load`` adds the server and the echo
baseline. Bodies are decoded as the server does
(:class:`~extender.args_decoder.ExtenderArgsDecoder`, one per server). The baseline here is
the same request decoded and answered without planning. ``prioritize`` gets the filter's
survivors, as kube-scheduler sends it (``survivors``), or every node (``all``, the worst
case). Default run: 256 nodes (smoke); ``-m benchmark_heavy``: 10,000 nodes.
"""

from __future__ import annotations

import itertools

import orjson
import pytest
from phalanx.extender import wire
from phalanx.extender.args_decoder import ExtenderArgsDecoder
from phalanx.extender.config import ServeConfig
from phalanx.extender.runtime import planner_factory
from phalanx.topology.presets import cluster_preset

SMOKE_NODES = 256
FULL_NODES = 10_000


def request_body(i: int, names: list[str]) -> bytes:
    pod = {
        "metadata": {"name": f"b-{i}", "namespace": "bench", "uid": f"u-{i}"},
        "spec": {"containers": [{"name": "w", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
        "status": {"phase": "Pending"},
    }
    return orjson.dumps({"Pod": pod, "Nodes": None, "NodeNames": names})


def make_round(nodes: int, prioritize_all: bool = False):
    cluster = cluster_preset(f"dgx-h100:{nodes}")
    planner = planner_factory(ServeConfig())(cluster)
    names = [n.name for n in cluster.nodes]
    counter = itertools.count()
    decode_args = ExtenderArgsDecoder()

    def setup():
        return (request_body(next(counter), names),), {}

    def filter_and_prioritize(body: bytes) -> tuple[dict, list]:
        args = decode_args(body)
        decision = planner.filter(args.pod, args.node_names)
        filtered = wire.encode(wire.filter_reply(decision.passing, decision.failed))
        survivors = {"Pod": args.pod, "Nodes": None, "NodeNames": decision.passing}
        second = body if prioritize_all else orjson.dumps(survivors)
        args = decode_args(second)
        scores = wire.prioritize_reply(
            args.node_names, planner.prioritize(args.pod, args.node_names)
        )
        wire.encode(scores)
        return orjson.loads(filtered), scores

    def echo(body: bytes) -> bytes:
        decode_args(body)
        return wire.encode(wire.filter_reply([]))

    return setup, filter_and_prioritize, echo


def _check(result: tuple[dict, list]) -> None:
    filtered, scores = result
    (node,) = filtered["NodeNames"]
    best = max(scores, key=lambda s: s["Score"])
    assert best == {"Host": node, "Score": wire.MAX_EXTENDER_PRIORITY}
    assert all(s["Score"] < wire.MAX_EXTENDER_PRIORITY for s in scores if s["Host"] != node)


@pytest.mark.parametrize("prioritize_all", [False, True], ids=["survivors", "all"])
def test_filter_prioritize_smoke(benchmark, prioritize_all):
    setup, run, _ = make_round(SMOKE_NODES, prioritize_all)
    _check(benchmark.pedantic(run, setup=setup, rounds=20, warmup_rounds=2))


def test_echo_baseline_smoke(benchmark):
    setup, _, echo = make_round(SMOKE_NODES)
    assert orjson.loads(benchmark.pedantic(echo, setup=setup, rounds=20))["Error"] == ""


@pytest.mark.benchmark_heavy
@pytest.mark.parametrize("prioritize_all", [False, True], ids=["survivors", "all"])
def test_filter_prioritize_10k_nodes(benchmark, prioritize_all):
    setup, run, _ = make_round(FULL_NODES, prioritize_all)
    _check(benchmark.pedantic(run, setup=setup, rounds=500, warmup_rounds=20))


@pytest.mark.benchmark_heavy
def test_echo_baseline_10k_nodes(benchmark):
    setup, _, echo = make_round(FULL_NODES)
    benchmark.pedantic(echo, setup=setup, rounds=500, warmup_rounds=20)
