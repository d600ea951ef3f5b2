"""Fixed-rate load and soak for the extender webhook: ``python -m phalanx.bench.extender_soak``.

Starts ``phalanx serve --cluster dgx-h100:NODES --dry-run`` pinned to one core (as
:mod:`bench.extender_load` does) and plays kube-scheduler at a fixed rate of filter + prioritize
*pairs* for ``--duration`` (or ``--soak``) seconds, with a gang mix that churns the ledger:

- Arrivals are open loop: gang ``i`` is due at ``t0 + (pairs before it) / rate`` whatever the
  server's speed, so a slow server shows as queueing lag and latency, not as a lower offered
  rate (a closed loop would wait for replies and hide it).
- A gang of ``n`` pods (``phalanx.io/gang`` annotations; ``n = 1`` is a plain pod) first sends
  the filters kube-scheduler sends before the quorum exists: members ``0..n-2`` are rejected
  "waiting for members" (counted as ``filter_waiting``, not as errors). Member ``n-1``'s filter
  plans the gang; then every member gets its pair (filter with every node, prioritize with the
  survivors) and its ``bind``.
- After ``--hold`` seconds each member *finishes*: the dry-run server learns pods only from the
  requests themselves, and a filter carrying the pod with ``status.phase: Succeeded`` is how it
  hears of a completion (``Planner._observe`` gives back a terminal pod's holding, as a watch
  event does in a real cluster). So releases go through the ordinary ``filter`` verb with the
  pod's node as the only name; no debug endpoint is needed.

Errors: a status other than 200, a non-empty ``Error`` field, a timeout or a dropped connection,
and a member of a planned gang that gets no node. The server's RSS (``VmRSS`` in
``/proc/PID/status``) is sampled every ``--rss-every`` seconds; a soak judges whether it is flat.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import os
import queue
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from phalanx.bench.extender_load import (
    Connection,
    args_body,
    cores_of,
    free_port,
    pin_client,
    process_cpu_s,
    start_server,
    wait_ready,
)
from phalanx.bench.soak_rss import SOAK_FLAT_FROM_S, flatness, sample_rss, server_rss_mib

DEFAULT_MIX = "1:60,2:20,4:12,8:8"
"""Gang size : share of arrivals. Plain pods ask for 1 GPU, gang members for a whole node (8)."""
SINGLE_GPUS = 1
GANG_MEMBER_GPUS = 8
REQUEST_TIMEOUT_S = 5.0
"""A reply later than this counts as a timeout error (kube-scheduler's extender default: 5 s)."""
DRAIN_S = 15.0
"""After the last arrival, queued gangs are still started for this long; later ones are
counted as ``not_started`` (the offered load the server never got to)."""
FINISH_POLL_S = 0.005
PERCENTILES = (0.5, 0.99)
SEED = 11
NS = "soak"
OK_ERROR = b'"Error":""}'
"""How an encoded filter or bind reply with no error ends (``Error`` is its last key)."""


def parse_mix(text: str) -> list[tuple[int, float]]:
    """``"1:60,2:20"`` -> ``[(1, 60.0), (2, 20.0)]``: gang sizes and their arrival weights."""
    mix = []
    for part in text.split(","):
        size, _, weight = part.partition(":")
        mix.append((int(size), float(weight or 1)))
    if not mix or any(s < 1 or w <= 0 for s, w in mix):
        raise ValueError(f"bad gang mix {text!r}: want SIZE:WEIGHT,...")
    return mix


def member_pod(gang: int, size: int, rank: int, phase: str = "Pending", node: str = "") -> dict:
    """A member pod as kube-scheduler sends it; names and uids are never reused, so a pod that
    finished is never mistaken for a new one."""
    name = f"p{gang}" if size == 1 else f"g{gang}-{rank}"
    gpus = SINGLE_GPUS if size == 1 else GANG_MEMBER_GPUS
    annotations = (
        {} if size == 1 else {"phalanx.io/gang": f"g{gang}", "phalanx.io/gang-size": str(size)}
    )
    spec: dict[str, Any] = {
        "containers": [{"name": "w", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]
    }
    if node:
        spec["nodeName"] = node
    return {
        "metadata": {"name": name, "namespace": NS, "uid": f"u-{name}", "annotations": annotations},
        "spec": spec,
        "status": {"phase": phase},
    }


@dataclass(frozen=True)
class Arrival:
    gang: int
    size: int
    due: float


@dataclass(frozen=True)
class Finish:
    gang: int
    size: int
    nodes: tuple[str, ...]
    due: float


@dataclass
class Latency:
    """Round trip and server time (``Server-Timing``) of one verb, in ms."""

    round_trip_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        out: dict[str, float] = {"n": len(self.round_trip_ms)}
        for label, xs in (("round_trip", self.round_trip_ms), ("server", self.server_ms)):
            if xs:
                ordered = sorted(xs)
                for q in PERCENTILES:
                    at = min(len(ordered) - 1, int(q * len(ordered)))
                    out[f"{label}_p{round(q * 100)}_ms"] = round(ordered[at], 3)
                out[f"{label}_max_ms"] = round(ordered[-1], 3)
        return out


@dataclass
class Tally:
    """Everything the workers count, under one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    verbs: dict[str, Latency] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    pair_done_at: list[float] = field(default_factory=list)
    lag_ms: list[float] = field(default_factory=list)
    finish_lag_ms: list[float] = field(default_factory=list)
    gangs_done: int = 0
    finishes: list[Finish] = field(default_factory=list)
    not_started: int = 0
    last_error: str = ""

    def record(self, verb: str, round_trip_ms: float, server_ms: float) -> None:
        with self.lock:
            lat = self.verbs.setdefault(verb, Latency())
            lat.round_trip_ms.append(round_trip_ms)
            lat.server_ms.append(server_ms)

    def error(self, kind: str, detail: str) -> None:
        with self.lock:
            self.errors[kind] = self.errors.get(kind, 0) + 1
            self.last_error = detail[:300]


class _RequestFailed(Exception):
    pass


class Worker:
    """One keep-alive connection working through due gangs and finishes, as one of
    kube-scheduler's scheduling/binding goroutines would."""

    def __init__(self, port: int, names_json: list[bytes], tally: Tally, hold_s: float) -> None:
        self.port, self.names_json, self.tally, self.hold_s = port, names_json, tally, hold_s
        self.conn = self._connect()
        self.turn = 0
        self.last_ms = (0.0, 0.0)
        """Round trip and server time of the last request."""

    def _connect(self) -> Connection:
        conn = Connection(self.port)
        conn.sock.settimeout(REQUEST_TIMEOUT_S)
        return conn

    def post(self, verb: str, path: str, body: bytes) -> bytes:
        """One request, timed and checked; a failure is counted and raised."""
        start = time.perf_counter()
        try:
            status, reply, server_ms = self.conn.post(path, body)
        except TimeoutError as exc:
            self._reconnect()
            self.tally.error("timeout", f"{verb}: {exc}")
            raise _RequestFailed from exc
        except (ConnectionError, OSError) as exc:
            self._reconnect()
            self.tally.error("connection", f"{verb}: {exc}")
            raise _RequestFailed from exc
        self.last_ms = ((time.perf_counter() - start) * 1000, server_ms)
        self.tally.record(verb, *self.last_ms)
        if status != 200:
            self.tally.error("status", f"{verb}: HTTP {status}: {reply[:200]!r}")
            raise _RequestFailed
        if path in ("/filter", "/bind") and not reply.endswith(OK_ERROR):
            error = orjson.loads(reply).get("Error")
            if error:
                self.tally.error("error_field", f"{verb}: {error}")
                raise _RequestFailed
        return reply

    def _reconnect(self) -> None:
        try:
            self.conn.close()
            self.conn = self._connect()
        except OSError:
            pass

    def names(self) -> bytes:
        self.turn += 1
        return self.names_json[self.turn % len(self.names_json)]

    def schedule(self, task: Arrival) -> None:
        """Quorum filters, then filter -> prioritize -> bind for every member; its finish is
        due ``hold_s`` later."""
        pods = [orjson.dumps(member_pod(task.gang, task.size, r)) for r in range(task.size)]
        nodes: list[str] = []
        try:
            for pod in pods[:-1]:
                self.post("filter_waiting", "/filter", args_body(pod, self.names()))
            for pod in pods[-1:] + pods[:-1]:
                reply = self.post("filter", "/filter", args_body(pod, self.names()))
                filter_ms = self.last_ms
                survivors = orjson.loads(reply)["NodeNames"] or []
                if len(survivors) != 1:
                    self.tally.error("not_placed", f"g{task.gang}: {reply[:300]!r}")
                    break
                self.post("prioritize", "/prioritize", args_body(pod, orjson.dumps(survivors)))
                pair_rt, pair_server = (a + b for a, b in zip(filter_ms, self.last_ms, strict=True))
                self.tally.record("filter+prioritize", pair_rt, pair_server)
                with self.tally.lock:
                    self.tally.pair_done_at.append(time.monotonic())
                nodes.append(survivors[0])
            if len(nodes) == task.size:
                order = pods[-1:] + pods[:-1]
                binds = []
                for pod, node in zip(order, nodes, strict=True):
                    meta = orjson.loads(pod)["metadata"]
                    bind = {
                        "PodName": meta["name"],
                        "PodNamespace": NS,
                        "PodUID": meta["uid"],
                        "Node": node,
                    }
                    binds.append(orjson.dumps(bind))
                self.bind_together(binds)
        except _RequestFailed:
            pass
        # rank order of the nodes: the last member was planned first
        by_rank = tuple(nodes[1:] + nodes[:1]) if len(nodes) == task.size else ()
        finish = Finish(task.gang, task.size, by_rank, time.monotonic() + self.hold_s)
        with self.tally.lock:
            self.tally.gangs_done += 1
            heapq.heappush(self.tally.finishes, (finish.due, finish.gang, finish))  # type: ignore[misc]

    def bind_together(self, binds: list[bytes]) -> None:
        """Post a gang's binds at once, one connection each, as kube-scheduler's binding
        goroutines do (the extender's bind barrier holds each until all have arrived)."""
        if len(binds) == 1:
            self.post("bind", "/bind", binds[0])
            return
        workers = [Worker(self.port, self.names_json, self.tally, self.hold_s) for _ in binds[1:]]
        threads = [
            threading.Thread(target=_post_quietly, args=(w, "bind", "/bind", body))
            for w, body in zip(workers, binds[1:], strict=True)
        ]
        for thread in threads:
            thread.start()
        try:
            self.post("bind", "/bind", binds[0])
        finally:
            for thread in threads:
                thread.join()
            for w in workers:
                w.conn.close()

    def finish(self, task: Finish) -> None:
        """Every member ends (``Succeeded`` on its node); a gang that was never placed is
        ended too, so no pod it left behind stays in the ledger."""
        for rank in range(task.size):
            node = task.nodes[rank] if task.nodes else "h100-00000"
            pod = orjson.dumps(member_pod(task.gang, task.size, rank, "Succeeded", node))
            with contextlib.suppress(_RequestFailed):
                self.post("finish", "/filter", args_body(pod, orjson.dumps([node])))


def _post_quietly(worker: Worker, verb: str, path: str, body: bytes) -> None:
    """A request whose failure the tally has counted already."""
    with contextlib.suppress(_RequestFailed):
        worker.post(verb, path, body)


def arrivals(mix: list[tuple[int, float]], rate: float, t0: float, duration_s: float):
    """Due gangs: open-loop times from the pair rate, sizes drawn from the mix."""
    rng = random.Random(SEED)
    sizes, weights = zip(*mix, strict=True)
    pairs, gang = 0, 0
    while (due := t0 + pairs / rate) < t0 + duration_s:
        size = rng.choices(sizes, weights)[0]
        yield Arrival(gang, size, due)
        pairs += size
        gang += 1


def run(opts: argparse.Namespace) -> dict[str, Any]:
    """Start the server, offer the load, and gather the report."""
    duration = float(opts.soak or opts.duration)
    mix = parse_mix(opts.mix)
    names = [f"h100-{i:05d}" for i in range(opts.nodes)]
    rng = random.Random(SEED)
    names_json = [orjson.dumps(names)]
    if opts.shuffle:
        names_json = [orjson.dumps(rng.sample(names, len(names))) for _ in range(16)]
    port = free_port()
    proc = start_server(opts.nodes, port)
    tally, rss, stop = Tally(), [], threading.Event()
    tasks: queue.Queue[Arrival | None] = queue.Queue()
    try:
        wait_ready(port, proc)
        cores = {"server": cores_of(proc.pid), "client": cores_of(0)}
        rss_start = server_rss_mib(proc.pid)
        workers = [Worker(port, names_json, tally, opts.hold) for _ in range(opts.connections)]
        t0 = time.monotonic() + 0.2
        hard_stop = t0 + duration + DRAIN_S

        def work(w: Worker) -> None:
            while (task := tasks.get()) is not None:
                start = time.monotonic()
                with tally.lock:
                    if start > hard_stop:
                        tally.not_started += 1
                        continue
                    tally.lag_ms.append((start - task.due) * 1000)
                w.schedule(task)
            w.conn.close()

        threads = [threading.Thread(target=work, args=(w,), daemon=True) for w in workers]
        threads += [
            threading.Thread(
                target=finish_due,
                args=(Worker(port, names_json, tally, opts.hold), tally, hard_stop),
                daemon=True,
            )
            for _ in range(opts.finishers)
        ]
        for t in threads:
            t.start()
        sampler = threading.Thread(
            target=sample_rss, args=(proc.pid, opts.rss_every, t0, stop, rss), daemon=True
        )
        sampler.start()
        cpu0 = process_cpu_s(proc.pid)
        offered = 0
        for arrival in arrivals(mix, opts.rate, t0, duration):
            if (wait := arrival.due - time.monotonic()) > 0:
                time.sleep(wait)
            tasks.put(arrival)
            offered += arrival.size
        end = t0 + duration
        time.sleep(max(0.0, end - time.monotonic()))
        for _ in workers:
            tasks.put(None)
        for t in threads:
            t.join(timeout=max(0.0, hard_stop - time.monotonic()) + 2 * REQUEST_TIMEOUT_S)
        server_cpu_s = process_cpu_s(proc.pid) - cpu0
        stop.set()
        sampler.join(timeout=5)
    finally:
        stop.set()
        proc.terminate()
        proc.wait(timeout=30)
    report = _report(opts, duration, tally, rss, rss_start, offered, t0, end, server_cpu_s)
    return {**report, "cores": cores}


def finish_due(worker: Worker, tally: Tally, until: float) -> None:
    """Completions on connections of their own, each when it falls due: pods end on the
    kubelet's clock, not behind the scheduler's backlog (queued behind arrivals, a saturated
    run would hold every pod as long as its lag and fill the cluster). Several finishers share
    the due heap: one alone, waiting in the saturated server's queue for every reply, fell
    behind and let the live pods (and the planning cost that grows with them) pile up."""
    while (now := time.monotonic()) < until:
        with tally.lock:
            due = tally.finishes[0][2] if tally.finishes and tally.finishes[0][0] <= now else None
            if due is not None:
                heapq.heappop(tally.finishes)
                tally.finish_lag_ms.append((now - due.due) * 1000)
        if due is None:
            time.sleep(FINISH_POLL_S)
        else:
            worker.finish(due)
    worker.conn.close()


def _report(
    opts: argparse.Namespace,
    duration: float,
    tally: Tally,
    rss: list[tuple[float, float]],
    rss_start: float,
    offered: int,
    t0: float,
    end: float,
    server_cpu_s: float,
) -> dict[str, Any]:
    in_time = sum(1 for t in tally.pair_done_at if t <= t0 + duration)
    pairs = len(tally.pair_done_at)
    last = max(tally.pair_done_at, default=end)
    per_minute = [0] * max(1, int(-(-duration // 60)))
    for t in tally.pair_done_at:
        per_minute[min(len(per_minute) - 1, int((t - t0) // 60))] += 1
    # one pod per pair: the pods placed while the flatness span ran
    judged_pods = sum(1 for t in tally.pair_done_at if SOAK_FLAT_FROM_S <= t - t0 <= duration)
    pair = tally.verbs.pop("filter+prioritize", Latency())
    verbs = {k: v.summary() for k, v in sorted(tally.verbs.items())}
    lag = Latency(tally.lag_ms, [])
    requests = sum(len(v.round_trip_ms) for v in tally.verbs.values())
    curve = [(t, m) for t, m in rss]
    errors = dict(sorted(tally.errors.items()))
    return {
        "nodes": opts.nodes,
        "mix": opts.mix,
        "hold_s": opts.hold,
        "connections": opts.connections,
        "shuffled": opts.shuffle,
        "duration_s": duration,
        "offered_pairs_per_s": opts.rate,
        "offered_pairs": offered,
        "pairs_done": pairs,
        "pairs_per_s": round(in_time / duration, 1),
        "pairs_per_s_with_drain": round(pairs / max(last - t0, 1e-9), 1),
        "gangs_done": tally.gangs_done,
        "gangs_not_started": tally.not_started,
        "http_requests": requests,
        "server_cpu_s": round(server_cpu_s, 1),
        "pairs_per_server_cpu_s": round(pairs / server_cpu_s, 1) if server_cpu_s else None,
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
        "last_error": tally.last_error,
        "latency_ms": {"filter+prioritize": pair.summary(), **verbs},
        "queue_lag_ms": {
            k.removeprefix("round_trip_"): v
            for k, v in lag.summary().items()
            if not k.startswith("server")
        },
        "finish_lag_ms": {
            k.removeprefix("round_trip_"): v
            for k, v in Latency(tally.finish_lag_ms, []).summary().items()
            if not k.startswith("server")
        },
        "rss_start_mib": round(rss_start, 1),
        "rss_mib": curve,
        "pairs_per_minute": per_minute,
        "rss_flatness": flatness(curve, duration, judged_pods),
        "load_average": os.getloadavg(),
    }


def print_text(report: dict[str, Any]) -> None:
    """The report for a reader: rates, errors, latency table, RSS curve, verdict."""
    r = report
    print(
        f"{r['nodes']} nodes, mix {r['mix']}, {r['connections']} connections, "
        f"{r['duration_s']:.0f} s at {r['offered_pairs_per_s']} pairs/s offered"
    )
    print(
        f"pairs: {r['pairs_done']} done, {r['pairs_per_s']}/s in the run "
        f"({r['pairs_per_s_with_drain']}/s with the drain), {r['pairs_per_server_cpu_s']} per "
        f"server CPU-s; gangs not started: {r['gangs_not_started']}"
    )
    print(f"errors: {r['errors']} {r['errors_by_kind']} {r['last_error']}")
    print(f"{'ms':<18}{'n':>8}{'p50':>9}{'p99':>9}{'max':>9}   server p50/p99")
    for verb, s in r["latency_ms"].items():
        print(
            f"{verb:<18}{s['n']:>8}{s.get('round_trip_p50_ms', 0):>9}"
            f"{s.get('round_trip_p99_ms', 0):>9}{s.get('round_trip_max_ms', 0):>9}"
            f"   {s.get('server_p50_ms', 0)}/{s.get('server_p99_ms', 0)}"
        )
    lag = r["queue_lag_ms"]
    print(f"queue lag: p50 {lag.get('p50_ms')} p99 {lag.get('p99_ms')} max {lag.get('max_ms')} ms")
    fin = r["finish_lag_ms"]
    print(
        f"completion lag: p50 {fin.get('p50_ms')} p99 {fin.get('p99_ms')} "
        f"max {fin.get('max_ms')} ms"
    )
    print(f"pairs per minute: {r['pairs_per_minute']}")
    print("RSS (s, MiB): " + " ".join(f"{t:.0f}:{m:.0f}" for t, m in r["rss_mib"]))
    print(f"RSS flatness: {r['rss_flatness']}")
    print(f"load average: {r['load_average']}; cores: {r['cores']}")


def plot(report: dict[str, Any], path: str) -> None:
    """A small PNG of the RSS curve (Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = [t / 60 for t, _ in report["rss_mib"]]
    ms = [m for _, m in report["rss_mib"]]
    fig, ax = plt.subplots(figsize=(6, 2.6), dpi=100)
    ax.plot(ts, ms, lw=1.2)
    flat = report["rss_flatness"]
    if flat.get("judged"):
        ax.axvline(flat["from_s"] / 60, color="grey", ls=":", lw=1)
    ax.set_xlabel("minutes")
    ax.set_ylabel("server RSS, MiB")
    ax.set_ylim(0, max(ms) * 1.1 if ms else 1)
    ax.set_title(
        f"phalanx serve --dry-run, {report['nodes']} nodes, "
        f"{report['pairs_per_s']} pairs/s (offered {report['offered_pairs_per_s']})",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=1000.0, help="filter+prioritize pairs/s")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--soak", type=float, default=0.0, help="seconds; overrides --duration")
    parser.add_argument("--mix", default=DEFAULT_MIX, help="gang SIZE:WEIGHT,...")
    parser.add_argument("--hold", type=float, default=5.0, help="seconds a pod runs after bind")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--finishers", type=int, default=4, help="connections for completions")
    parser.add_argument("--rss-every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--shuffle", action="store_true", help="a new name order per request")
    parser.add_argument("--plot", help="write a PNG of the RSS curve here")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    opts = parser.parse_args(argv)
    pin_client()
    report = run(opts)
    if opts.plot:
        plot(report, opts.plot)
    if opts.json:
        print(orjson.dumps(report).decode())
    else:
        print_text(report)
    return 0 if report["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
