"""The extender's request path without HTTP: ``python -m phalanx.bench.extender_in_process``.

Builds the app ``phalanx serve --cluster dgx-h100:NODES --dry-run`` serves (same planner
factory, same dry-run backend with its gang status thread, logging configured as ``serve``
configures it, the decision lines written to the null device) and calls its ``filter`` and
``prioritize`` handlers directly on request bodies shaped as kube-scheduler sends them: every
node in ``NodeNames`` in a new order per member, then the filter's survivors. One process on
one core (when there are two), so the figure is the CPU time of the app's own work per pair,
with none of the HTTP stack's, and varies less than the HTTP bench (:mod:`bench.extender_load`)
from run to run: the one to compare two trees with when the change is in the app. Reports the
median over ``--repeats`` blocks of ``--pairs`` pairs of CPU time per pair, and pairs per CPU
second; the members are never bound, so the planner's pending pods grow through the run as in
the HTTP bench. Also the handlers' own wall time per pair (the server time the HTTP bench reads
from ``Server-Timing``), median and p99 over every timed pair, back to back or, with
``--gap-ms``, with the process idle that long before each pair, as a server between two
sequential requests is: the HTTP bench's latency phase sends one request at a time.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import random
import statistics
import sys
import time

import orjson
from phalanx.bench.extender_load import SHUFFLE_SEED, SHUFFLED_ORDERS, args_body, pod_bytes
from phalanx.extender.app import ExtenderApp
from phalanx.extender.config import ServeConfig
from phalanx.extender.decision_log import configure_logging
from phalanx.extender.runtime import DryRunBackend, planner_factory
from phalanx.topology.sources import load_cluster

WARMUP_PAIRS = 200
WARMUP_FIRST = 10**9
"""Pod numbers of the warm-up members: apart from the measured ones."""
CORE = 0
MS_PER_S = 1000
P99 = 0.99


def _app(nodes: int) -> ExtenderApp:
    configure_logging("text")
    handler = logging.getLogger().handlers[0]
    handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 (lives as long as the process)
    planner = planner_factory(ServeConfig())(load_cluster(f"dgx-h100:{nodes}"))
    return ExtenderApp(DryRunBackend(planner))


def _pair(app: ExtenderApp, i: int, names_json: bytes, gpus: int) -> float:
    """One filter + prioritize; returns the handlers' wall seconds (bodies built apart)."""
    pod = pod_bytes(i, gpus)
    body = args_body(pod, names_json)
    start = time.perf_counter()
    status, reply = app._filter(body)
    filter_s = time.perf_counter() - start
    doc = orjson.loads(reply) if isinstance(reply, bytes) else reply
    if status != 200 or doc.get("Error") or not doc.get("NodeNames"):
        raise RuntimeError(f"member {i} was not planned: {doc.get('Error') or doc}")
    body = args_body(pod, orjson.dumps(doc["NodeNames"]))
    start = time.perf_counter()
    app._prioritize(body)
    return filter_s + time.perf_counter() - start


def run(nodes: int, pairs: int, repeats: int, gpus: int, gap_ms: float = 0.0) -> dict[str, object]:
    """The figures of ``repeats`` timed blocks (configures the process's logging as ``phalanx
    serve`` does)."""
    app = _app(nodes)
    names = [f"h100-{i:05d}" for i in range(nodes)]
    rng = random.Random(SHUFFLE_SEED)
    orders = [orjson.dumps(rng.sample(names, len(names))) for _ in range(SHUFFLED_ORDERS)]
    gc.collect()
    gc.freeze()  # as the server's start-up does with the cluster model
    for k in range(WARMUP_PAIRS):
        _pair(app, WARMUP_FIRST + k, orders[k % len(orders)], gpus)
    per_pair_ms: list[float] = []
    server_ms: list[float] = []
    member = 0
    for _ in range(repeats):
        busy_s = 0.0
        for _ in range(pairs):
            if gap_ms:
                time.sleep(gap_ms / MS_PER_S)
            start = time.process_time()
            server_ms.append(_pair(app, member, orders[member % len(orders)], gpus) * MS_PER_S)
            busy_s += time.process_time() - start
            member += 1
        per_pair_ms.append(busy_s * MS_PER_S / pairs)
    median = statistics.median(per_pair_ms)
    server_ms.sort()
    return {
        "nodes": nodes,
        "gpus_per_member": gpus,
        "pairs_per_block": pairs,
        "gap_ms": gap_ms,
        "cpu_ms_per_pair_by_block": [round(x, 4) for x in per_pair_ms],
        "cpu_ms_per_pair_median": round(median, 4),
        "pairs_per_cpu_s": round(MS_PER_S / median, 1),
        "server_ms_median": round(statistics.median(server_ms), 4),
        "server_ms_p99": round(server_ms[int(P99 * (len(server_ms) - 1))], 4),
        "cores": sorted(os.sched_getaffinity(0)),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m phalanx.bench.extender_in_process", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--pairs", type=int, default=1000, help="pairs per timed block")
    parser.add_argument("--repeats", type=int, default=3, help="timed blocks")
    parser.add_argument("--gpus", type=int, default=1, help="whole GPUs each member asks for")
    parser.add_argument(
        "--gap-ms", type=float, default=0.0, help="idle time before each pair (default none)"
    )
    opts = parser.parse_args(argv)
    if CORE in os.sched_getaffinity(0):
        os.sched_setaffinity(0, {CORE})
    report = run(opts.nodes, opts.pairs, opts.repeats, opts.gpus, opts.gap_ms)
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
