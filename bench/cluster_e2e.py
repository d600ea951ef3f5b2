"""Phalanx in a real control plane, end to end: ``python -m phalanx.bench.cluster_e2e``.

For each node count, one loopback control plane (etcd, kube-apiserver and kube-scheduler built
from source, see ``tests/cluster/README.md``) gets that many exported DGX H100 Node objects, then:

(a) **throughput**: 2,000 single-GPU pods created while kube-scheduler is stopped, then
    kube-scheduler started; pods bound per second (first to last bind) with kube-scheduler +
    Phalanx, against the same kube-scheduler without the extender entry, in the same run;
(b) **gangs**: 12 gangs x 64 pods x 8 GPUs (48 gangs on 5,000 nodes) created at once, members of
    every gang interleaved; per gang the start latency (its last member created -> all members
    bound), the spread between its first and last bind, and the GPU-seconds held by gangs that
    were partly bound (members bound while others were not);
(c) **peer baseline**: the same gangs under kube-scheduler's native gang scheduling (the Workload
    API's PodGroup, feature gate ``GenericWorkload``) without Phalanx;
(d) **one gang at a time** (``--isolated N``, Phalanx and native): N gangs of 64 pods x 8 GPUs,
    each created in a random order (16 creator threads) on the otherwise idle cluster and
    deleted once bound; the same three figures per gang. Phase (b) measures gangs queued behind
    each other (the last gang waits for kube-scheduler to go through every earlier member);
    this phase measures the protocol itself.

Phases (a) and (b) run kube-scheduler with the release's default feature gates and the chart's
configuration; only (c) turns ``GenericWorkload`` on, which it needs.

Run from a source checkout (it uses the test suite's control-plane harness). ``--json`` prints
one object: the largest node count's figures at the top level, every count under ``runs``.
Each phase is bounded by ``--timeout``; a gang not complete by then is counted as
such, and its partial hold runs to the end of the phase.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PRESET = "dgx-h100"
CREATORS = 16
"""Threads creating pods; the same for every phase so creation speed cancels in the ratios."""
GPUS_PER_NODE = 8
DEFAULT_NODES = (1000, 5000)
DEFAULT_PODS = 2000
DEFAULT_GANG_MEMBERS = 64
GANGS_BY_NODES = {1000: 12, 5000: 48}
"""12 gangs on 1,000 nodes (77 % of the GPUs), 48 on 5,000 (61 %); other sizes in proportion."""
DEFAULT_GATES = ""
"""Phalanx phases run kube-scheduler with the release's default feature gates."""
DEFAULT_TIMEOUT_S = 300.0
DEFAULT_ISOLATED = 5
PERCENTILES = (50, 99)


@dataclass
class BindLog:
    """When each pod was created and bound, from a watch on the benchmark's namespace."""

    created_s: dict[str, float] = field(default_factory=dict)
    bound_s: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def created(self, name: str) -> None:
        with self.lock:
            self.created_s[name] = time.monotonic()

    def bound(self, name: str) -> None:
        with self.lock:
            self.bound_s.setdefault(name, time.monotonic())

    def count_bound(self) -> int:
        with self.lock:
            return len(self.bound_s)


def _watch_binds(api: Any, namespace: str, log: BindLog, stop: threading.Event) -> None:
    from kubernetes import client, watch

    core = client.CoreV1Api(api)
    while not stop.is_set():
        stream = watch.Watch()
        try:
            for event in stream.stream(
                core.list_namespaced_pod, namespace, timeout_seconds=5, _request_timeout=10
            ):
                pod = event["object"]
                if pod.spec.node_name:
                    log.bound(pod.metadata.name)
                if stop.is_set():
                    break
        except Exception:
            time.sleep(0.2)
        finally:
            stream.stop()


def _run_phase(
    plane: Any,
    namespace: str,
    bodies: list[dict[str, Any]],
    expected: int,
    timeout_s: float,
    before_pods: Callable[[], None] | None = None,
    after_pods: Callable[[], None] | None = None,
) -> tuple[BindLog, float]:
    """Creates ``bodies`` from CREATORS threads and waits for ``expected`` binds."""
    from kubernetes import client

    from tests.cluster.objects import ensure_namespace

    api = plane.api()
    ensure_namespace(api, namespace)
    log = BindLog()
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_binds, args=(api, namespace, log, stop), daemon=True)
    watcher.start()
    time.sleep(0.5)
    if before_pods is not None:
        before_pods()
    apis = [plane.api() for _ in range(CREATORS)]

    def create(indexed: tuple[int, dict[str, Any]]) -> None:
        i, body = indexed
        client.CoreV1Api(apis[i % CREATORS]).create_namespaced_pod(namespace, body)
        log.created(body["metadata"]["name"])

    start = time.monotonic()
    with ThreadPoolExecutor(CREATORS) as pool:
        list(pool.map(create, enumerate(bodies)))
    if after_pods is not None:
        after_pods()
    deadline = start + timeout_s
    while log.count_bound() < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    end = time.monotonic()
    stop.set()
    watcher.join(15)
    return log, end - start


def _delete_namespace_pods(plane: Any, namespace: str) -> None:
    from tests.cluster.objects import delete_pods

    delete_pods(plane.api(), namespace)


def _pods_per_s(log: BindLog) -> float:
    """Binds per second between the first and the last bind: the pods were all created before
    kube-scheduler started, so this is its rate, not the client's creation rate."""
    if len(log.bound_s) < 2:
        return 0.0
    binds = sorted(log.bound_s.values())
    return (len(binds) - 1) / max(binds[-1] - binds[0], 1e-9)


def _throughput(plane: Any, namespace: str, pods: int, timeout_s: float, extender: bool) -> float:
    """Creates ``pods`` single-GPU pods while kube-scheduler is stopped, then starts it (with or
    without the extender entry) and measures its bind rate."""
    from tests.cluster.objects import plain_pod

    plane.stop_scheduler()
    if extender:
        plane.start_extender()
    else:
        plane.stop_extender()
    log, _ = _run_phase(
        plane,
        namespace,
        [plain_pod(f"p{i}", namespace, gpus=1) for i in range(pods)],
        pods,
        timeout_s,
        after_pods=lambda: plane.start_scheduler(
            with_extender=extender, feature_gates=DEFAULT_GATES
        ),
    )
    _delete_namespace_pods(plane, namespace)
    return _pods_per_s(log)


@dataclass
class GangFigures:
    gangs: int
    complete: int
    start_s: list[float]
    spread_s: list[float]
    partial_gpu_s: float
    """GPU-seconds of bound members while their gang was not whole: the two below."""
    incomplete_gpu_s: float = 0.0
    """Of which held by gangs that never completed (bound members to the end of the phase)."""

    @property
    def bind_window_gpu_s(self) -> float:
        """Of which held by gangs that completed, between each bind and the last one."""
        return self.partial_gpu_s - self.incomplete_gpu_s

    def __add__(self, other: GangFigures) -> GangFigures:
        return GangFigures(
            self.gangs + other.gangs,
            self.complete + other.complete,
            self.start_s + other.start_s,
            self.spread_s + other.spread_s,
            self.partial_gpu_s + other.partial_gpu_s,
            self.incomplete_gpu_s + other.incomplete_gpu_s,
        )


def _gang_figures(log: BindLog, gangs: list[Any], end_s: float) -> GangFigures:
    starts, spreads, partial, incomplete = [], [], 0.0, 0.0
    complete = 0
    for gang in gangs:
        names = gang.pod_names()
        binds = sorted(log.bound_s[n] for n in names if n in log.bound_s)
        last_created = max(log.created_s[n] for n in names)
        whole = len(binds) == gang.members
        if whole:
            complete += 1
            starts.append(binds[-1] - last_created)
            spreads.append(binds[-1] - binds[0])
        # GPUs of bound members while the gang was not whole: between each bind and completion
        held = sum(((binds[-1] if whole else end_s) - t) * gang.gpus for t in binds)
        partial += held
        if not whole:
            incomplete += held
    return GangFigures(len(gangs), complete, starts, spreads, partial, incomplete)


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def _gangs(count: int, members: int, dialect: str) -> list[Any]:
    from tests.cluster.objects import GangSpec

    return [GangSpec(f"g{i:03d}", members, GPUS_PER_NODE, dialect=dialect) for i in range(count)]


def _isolated(
    plane: Any, namespace: str, count: int, members: int, dialect: str, timeout_s: float
) -> GangFigures:
    """``count`` gangs one after the other, each created in a random order and deleted once
    bound (or timed out)."""
    import random

    from kubernetes import client

    from tests.cluster.objects import GangSpec, gang_pod, group_object

    total = GangFigures(0, 0, [], [], 0.0)
    rng = random.Random(17)
    for i in range(count):
        gang = GangSpec(f"iso{i:02d}", members, GPUS_PER_NODE, dialect=dialect)
        bodies = [gang_pod(gang, r, namespace) for r in range(members)]
        rng.shuffle(bodies)

        def create_group(gang: Any = gang) -> None:
            group = group_object(gang, namespace)
            if group is not None:
                api_group, version, body = group
                custom = client.CustomObjectsApi(plane.api())
                custom.create_namespaced_custom_object(
                    api_group, version, namespace, "podgroups", body
                )

        log, _ = _run_phase(plane, namespace, bodies, members, timeout_s, before_pods=create_group)
        total = total + _gang_figures(log, [gang], time.monotonic())
        _delete_namespace_pods(plane, namespace)
    return total


def _interleaved_bodies(gangs: list[Any], namespace: str) -> list[dict[str, Any]]:
    from tests.cluster.objects import gang_pod

    bodies = []
    for index in range(max(g.members for g in gangs)):
        bodies += [gang_pod(g, index, namespace) for g in gangs if index < g.members]
    return bodies


@dataclass
class NodeCountResult:
    nodes: int
    pods: int
    pods_per_s: float
    pods_per_s_baseline: float
    gangs: int
    gang_members: int
    gangs_complete: int
    gang_start_p50_s: float | None
    gang_start_p99_s: float | None
    bind_spread_p50_s: float | None
    bind_spread_p99_s: float | None
    partial_gang_gpu_s: float
    incomplete_gang_gpu_s: float
    bind_window_gpu_s: float
    native_gangs_complete: int
    native_gang_start_p50_s: float | None
    native_gang_start_p99_s: float | None
    native_bind_spread_p99_s: float | None
    native_partial_gang_gpu_s: float
    node_setup_s: float
    isolated_gangs: int = 0
    isolated_complete: int = 0
    isolated_start_p50_s: float | None = None
    isolated_start_p99_s: float | None = None
    isolated_spread_p99_s: float | None = None
    isolated_partial_gpu_s: float = 0.0
    isolated_incomplete_gpu_s: float = 0.0
    native_isolated_complete: int = 0
    native_isolated_start_p99_s: float | None = None
    native_isolated_spread_p99_s: float | None = None
    native_isolated_partial_gpu_s: float = 0.0


def run_node_count(
    nodes: int,
    pods: int,
    members: int,
    timeout_s: float,
    workdir: Path,
    progress: bool,
    isolated: int = DEFAULT_ISOLATED,
) -> NodeCountResult:
    from tests.cluster.build import ensure_built
    from tests.cluster.harness import FEATURE_GATES, ControlPlane
    from tests.cluster.objects import (
        NATIVE,
        PHALANX,
        group_object,
        node_objects,
        set_nodes,
    )

    def say(text: str) -> None:
        if progress:
            print(f"[{nodes} nodes] {text}", file=sys.stderr, flush=True)

    plane = ControlPlane(ensure_built(), workdir / f"n{nodes}")
    try:
        plane.start()
        t0 = time.monotonic()
        set_nodes(plane.api(), node_objects(f"{PRESET}:{nodes}"))
        node_setup_s = time.monotonic() - t0
        say(f"nodes written in {node_setup_s:.1f} s")

        # (a) throughput: the same kube-scheduler without, then with, the extender entry
        baseline = _throughput(plane, "tput-base", pods, timeout_s, extender=False)
        say(f"baseline {baseline:.1f} pods/s")
        with_phalanx = _throughput(plane, "tput", pods, timeout_s, extender=True)
        say(f"with Phalanx {with_phalanx:.1f} pods/s")

        # (b) gangs through Phalanx
        count = GANGS_BY_NODES.get(nodes, max(1, nodes * 12 // 1000))
        gangs = _gangs(count, members, PHALANX)
        log, elapsed = _run_phase(
            plane, "gangs", _interleaved_bodies(gangs, "gangs"), count * members, timeout_s
        )
        phalanx_figs = _gang_figures(log, gangs, time.monotonic())
        say(f"Phalanx gangs: {phalanx_figs.complete}/{count} whole in {elapsed:.1f} s")
        _delete_namespace_pods(plane, "gangs")
        solo = _isolated(plane, "solo", isolated, members, PHALANX, timeout_s)
        say(f"Phalanx, one gang at a time: start {solo.start_s} s, spread {solo.spread_s} s")

        # (c) the same gangs under kube-scheduler's native gang scheduling, no extender
        plane.stop_extender()
        plane.start_scheduler(with_extender=False, feature_gates=FEATURE_GATES)
        native = _gangs(count, members, NATIVE)

        def create_groups() -> None:
            from kubernetes import client

            custom = client.CustomObjectsApi(plane.api())
            for gang in native:
                group, version, body = group_object(gang, "native")
                custom.create_namespaced_custom_object(group, version, "native", "podgroups", body)

        log, elapsed = _run_phase(
            plane,
            "native",
            _interleaved_bodies(native, "native"),
            count * members,
            timeout_s,
            before_pods=create_groups,
        )
        native_figs = _gang_figures(log, native, time.monotonic())
        say(f"native gangs: {native_figs.complete}/{count} whole in {elapsed:.1f} s")
        _delete_namespace_pods(plane, "native")
        native_solo = _isolated(plane, "native", isolated, members, NATIVE, timeout_s)
        say(f"native, one gang at a time: start {native_solo.start_s} s")
    finally:
        plane.stop()
    return NodeCountResult(
        nodes=nodes,
        pods=pods,
        pods_per_s=round(with_phalanx, 1),
        pods_per_s_baseline=round(baseline, 1),
        gangs=count,
        gang_members=members,
        gangs_complete=phalanx_figs.complete,
        gang_start_p50_s=_percentile(phalanx_figs.start_s, 50),
        gang_start_p99_s=_percentile(phalanx_figs.start_s, 99),
        bind_spread_p50_s=_percentile(phalanx_figs.spread_s, 50),
        bind_spread_p99_s=_percentile(phalanx_figs.spread_s, 99),
        partial_gang_gpu_s=round(phalanx_figs.partial_gpu_s, 1),
        incomplete_gang_gpu_s=round(phalanx_figs.incomplete_gpu_s, 1),
        bind_window_gpu_s=round(phalanx_figs.bind_window_gpu_s, 1),
        native_gangs_complete=native_figs.complete,
        native_gang_start_p50_s=_percentile(native_figs.start_s, 50),
        native_gang_start_p99_s=_percentile(native_figs.start_s, 99),
        native_bind_spread_p99_s=_percentile(native_figs.spread_s, 99),
        native_partial_gang_gpu_s=round(native_figs.partial_gpu_s, 1),
        node_setup_s=round(node_setup_s, 1),
        isolated_gangs=isolated,
        isolated_complete=solo.complete,
        isolated_start_p50_s=_percentile(solo.start_s, 50),
        isolated_start_p99_s=_percentile(solo.start_s, 99),
        isolated_spread_p99_s=_percentile(solo.spread_s, 99),
        isolated_partial_gpu_s=round(solo.partial_gpu_s, 1),
        isolated_incomplete_gpu_s=round(solo.incomplete_gpu_s, 1),
        native_isolated_complete=native_solo.complete,
        native_isolated_start_p99_s=_percentile(native_solo.start_s, 99),
        native_isolated_spread_p99_s=_percentile(native_solo.spread_s, 99),
        native_isolated_partial_gpu_s=round(native_solo.partial_gpu_s, 1),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m phalanx.bench.cluster_e2e", description=__doc__
    )
    parser.add_argument("--nodes", default=",".join(map(str, DEFAULT_NODES)))
    parser.add_argument("--pods", type=int, default=DEFAULT_PODS)
    parser.add_argument("--members", type=int, default=DEFAULT_GANG_MEMBERS)
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S)
    parser.add_argument(
        "--isolated", type=int, default=DEFAULT_ISOLATED, help="gangs run one at a time"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if not (REPO / "tests" / "cluster" / "harness.py").is_file():
        print("error: run from a source checkout (needs tests/cluster)", file=sys.stderr)
        sys.exit(2)
    sys.path.insert(0, str(REPO))
    try:
        counts = [int(n) for n in args.nodes.split(",") if n]
    except ValueError:
        print(f"error: --nodes {args.nodes!r}: expected a comma list of integers", file=sys.stderr)
        sys.exit(2)
    # SIGTERM unwinds like Ctrl-C, so every started component is stopped by its PID
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = []
    with tempfile.TemporaryDirectory(prefix="phalanx-e2e-") as tmp:
        for nodes in counts:
            results.append(
                run_node_count(
                    nodes, args.pods, args.members, args.timeout, Path(tmp), True, args.isolated
                )
            )
    load = os.getloadavg()
    if args.json:
        out: dict[str, Any] = asdict(results[-1])
        out["runs"] = [asdict(r) for r in results]
        out["load_average_1m_at_end"] = round(load[0], 2)
        print(json.dumps(out, indent=2))
        return
    for r in results:
        ratio = r.pods_per_s / max(r.pods_per_s_baseline, 1e-9)
        print(
            f"{r.nodes} nodes: {r.pods} single-GPU pods {r.pods_per_s} pods/s with Phalanx, "
            f"{r.pods_per_s_baseline} without (ratio {ratio:.2f}); {r.gangs} gangs x "
            f"{r.gang_members} x 8 GPUs: {r.gangs_complete} whole, start p50/p99 "
            f"{r.gang_start_p50_s}/{r.gang_start_p99_s} s, bind spread p99 "
            f"{r.bind_spread_p99_s} s, partial-gang GPU-s {r.partial_gang_gpu_s} (incomplete "
            f"gangs {r.incomplete_gang_gpu_s}, bind window {r.bind_window_gpu_s}); native gang "
            f"scheduling: {r.native_gangs_complete} whole, start p99 "
            f"{r.native_gang_start_p99_s} s, partial-gang GPU-s {r.native_partial_gang_gpu_s}"
        )
    print(f"load average (1 min) at the end: {load[0]:.2f}")


if __name__ == "__main__":
    main()
