"""Load generator for the extender webhook: ``python -m phalanx.bench.extender_load``.

Starts ``phalanx serve --cluster dgx-h100:NODES --dry-run --echo`` pinned to one CPU core,
then, from another core over loopback (127.0.0.1 only), plays kube-scheduler's part for one
member at a time: ``filter`` with every node in ``NodeNames``, then ``prioritize`` with the
filter's survivors (the pair the targets count; kube-scheduler itself asks no scores when
one node is feasible). Each member's server-side ``filter`` +
``prioritize`` time is the figure the target speaks of. Two more latency phases follow, each on
its own so that neither evicts the first phase's working set from the cache: ``prioritize``
with every node (the worst case, which kube-scheduler does not send after Phalanx's filter),
and the same filter bodies POSTed to ``/echo`` on the same server stack (the baseline). Prints
median and p99 of server-side time (the ``Server-Timing`` header) and of the round trip, and the
sustained rate with several connections in flight: HTTP requests per second of filter +
prioritize pairs against echo requests per second. On a shared machine the wall-clock rate
follows the neighbours' load, so the server's own CPU time over the phase (from ``/proc``) is
reported too: requests per server CPU-second is the rate one dedicated core would sustain.
Bounded by ``--requests`` and ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import orjson

HOST = "127.0.0.1"
SERVER_CORE = 0
CLIENT_CORE = 1
STARTING_CORES = frozenset(os.sched_getaffinity(0))
"""The cores this process may use before :func:`pin_client` narrows it: the server's core is
chosen from these (a child inherits its parent's narrowed mask)."""
SEPARATE_CORES = {SERVER_CORE, CLIENT_CORE} <= STARTING_CORES
"""Server and client each get a core of their own (else both run wherever they may)."""
STARTUP_TIMEOUT_S = 120.0
PERCENTILE_99 = 0.99
RECV_BYTES = 1 << 20
SHUFFLED_ORDERS = 16
"""Distinct orders cycled through with ``--shuffle``: more than any list the server remembers."""
SHUFFLE_SEED = 7
REQUESTS_PER_PAIR = 2
WARMUP_FIRST = 10**9
"""Pod numbers of the warm-up members: apart from the measured ones."""
USER_TICKS_FIELD = 11
SYSTEM_TICKS_FIELD = 12
"""utime and stime in ``/proc/PID/stat``, counted after the command name's closing parenthesis."""


@dataclass
class Throughput:
    requests: int
    wall_s: float
    server_cpu_s: float

    def summary(self, unit: str, per: int) -> dict[str, float]:
        """Rates of ``unit`` (each ``per`` HTTP requests) per wall and per server CPU second."""
        return {
            f"{unit}_per_s": round(self.requests / per / self.wall_s, 1),
            f"{unit}_per_server_cpu_s": round(self.requests / per / self.server_cpu_s, 1),
            "server_cpu_ms_per_request": round(1000 * self.server_cpu_s / self.requests, 3),
        }


@dataclass
class Samples:
    server_ms: list[float] = field(default_factory=list)
    round_trip_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        def pct(xs: list[float], q: float) -> float:
            ordered = sorted(xs)
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

        return {
            "n": len(self.server_ms),
            "server_median_ms": round(statistics.median(self.server_ms), 3),
            "server_p99_ms": round(pct(self.server_ms, PERCENTILE_99), 3),
            "round_trip_median_ms": round(statistics.median(self.round_trip_ms), 3),
            "round_trip_p99_ms": round(pct(self.round_trip_ms, PERCENTILE_99), 3),
        }


class Connection:
    """One keep-alive HTTP/1.1 connection (a blocking socket) speaking just enough HTTP."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def post(self, path: str, body: bytes) -> tuple[int, bytes, float]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.sock.sendall(head + body)
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        header, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = header.decode().split("\r\n")
        status = int(lines[0].split()[1])
        length, server_ms = 0, float("nan")
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "server-timing":
                server_ms = float(value.split("dur=")[1])
        while len(rest) < length:
            rest += self._recv()
        self.buffer = rest[length:]
        return status, rest[:length], server_ms

    def _recv(self) -> bytes:
        chunk = self.sock.recv(RECV_BYTES)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        return chunk

    def _fill(self) -> None:
        self.buffer += self._recv()

    def close(self) -> None:
        self.sock.close()


def pod_bytes(i: int, gpus: int = 1) -> bytes:
    limits = {"nvidia.com/gpu": str(gpus)}
    return orjson.dumps(
        {
            "metadata": {"name": f"load-{i}", "namespace": "bench", "uid": f"uid-{i}"},
            "spec": {"containers": [{"name": "w", "resources": {"limits": limits}}]},
            "status": {"phase": "Pending"},
        }
    )


def args_body(pod: bytes, names_json: bytes) -> bytes:
    return b'{"Pod":' + pod + b',"Nodes":null,"NodeNames":' + names_json + b"}"


def scheduling_sequence(
    conn: Connection, i: int, all_names: list[bytes], stats: dict[str, Samples], gpus: int = 1
) -> None:
    """filter -> prioritize (the filter's survivors) for one member, as kube-scheduler does."""
    pod = pod_bytes(i, gpus)
    start = time.perf_counter()
    status, body, filter_ms = conn.post("/filter", args_body(pod, all_names[i % len(all_names)]))
    _record(stats["filter"], start, filter_ms, status)
    survivors = orjson.dumps(orjson.loads(body)["NodeNames"])
    start = time.perf_counter()
    status, _, prioritize_ms = conn.post("/prioritize", args_body(pod, survivors))
    _record(stats["prioritize_survivors"], start, prioritize_ms, status)
    pair = stats["filter+prioritize"]
    pair.server_ms.append(filter_ms + prioritize_ms)
    pair.round_trip_ms.append(
        stats["filter"].round_trip_ms[-1] + stats["prioritize_survivors"].round_trip_ms[-1]
    )


def _record(samples: Samples, start: float, server_ms: float, status: int) -> None:
    if status != 200:
        raise RuntimeError(f"status {status}")
    samples.round_trip_ms.append((time.perf_counter() - start) * 1000)
    samples.server_ms.append(server_ms)


def latency_phase(
    port: int, members: int, all_names: list[bytes], warmup: int, gpus: int = 1
) -> dict[str, Samples]:
    """``warmup`` members first, not recorded: the server's first requests build its lazy
    per-cluster tables."""
    keys = ("filter", "prioritize_survivors", "filter+prioritize", "prioritize_all", "echo")
    stats = {k: Samples() for k in keys}
    conn = Connection(port)
    for i in range(WARMUP_FIRST, WARMUP_FIRST + warmup):
        scheduling_sequence(conn, i, all_names, {k: Samples() for k in keys}, gpus)
    for i in range(members):
        scheduling_sequence(conn, i, all_names, stats, gpus)
    for path, key in (("/prioritize", "prioritize_all"), ("/echo", "echo")):
        for i in range(members):
            start = time.perf_counter()
            body = args_body(pod_bytes(i, gpus), all_names[i % len(all_names)])
            status, _, server_ms = conn.post(path, body)
            _record(stats[key], start, server_ms, status)
    conn.close()
    return stats


def process_cpu_s(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc/PID/stat``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[USER_TICKS_FIELD]) + int(fields[SYSTEM_TICKS_FIELD])) / os.sysconf(
        "SC_CLK_TCK"
    )


def throughput_phase(
    port: int,
    server_pid: int,
    path: str,
    first: int,
    requests: int,
    connections: int,
    all_names: list[bytes],
    max_seconds: float,
    gpus: int = 1,
) -> Throughput:
    """HTTP requests of filter+prioritize(survivors) pairs (or echo) with ``connections`` in
    flight (one client thread each), the wall time and the server's CPU time they took."""
    counter = iter(range(first, first + requests))
    lock = threading.Lock()
    deadline = time.monotonic() + max_seconds
    done = [0]

    def worker() -> None:
        conn = Connection(port)
        while time.monotonic() < deadline:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            pod = pod_bytes(i, gpus)
            names_json = all_names[i % len(all_names)]
            if path == "/echo":
                conn.post("/echo", args_body(pod, names_json))
                sent = 1
            else:
                _, body, _ = conn.post("/filter", args_body(pod, names_json))
                survivors = orjson.dumps(orjson.loads(body)["NodeNames"])
                conn.post("/prioritize", args_body(pod, survivors))
                sent = REQUESTS_PER_PAIR
            with lock:
                done[0] += sent
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    cpu_start, start = process_cpu_s(server_pid), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall_s = time.perf_counter() - start
    return Throughput(done[0], wall_s, process_cpu_s(server_pid) - cpu_start)


def start_server(nodes: int, port: int) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-c",
        "from phalanx.cli import main; main()",
        "serve",
        "--cluster",
        f"dgx-h100:{nodes}",
        "--dry-run",
        "--echo",
        "--host",
        HOST,
        "--port",
        str(port),
    ]

    def pin() -> None:
        if SEPARATE_CORES:
            os.sched_setaffinity(0, {SERVER_CORE})

    return subprocess.Popen(
        cmd, preexec_fn=pin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def pin_client() -> None:
    """Keep the load generator on its own core, apart from the server's (when there are two)."""
    if SEPARATE_CORES:
        os.sched_setaffinity(0, {CLIENT_CORE})


def cores_of(pid: int) -> list[int]:
    """The cores a process may run on, as reported: where server and client really ran."""
    return sorted(os.sched_getaffinity(pid))


def wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the extender server exited during start-up")
        try:
            with socket.create_connection((HOST, port), timeout=1) as s:
                s.sendall(f"GET /readyz HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
                if b" 200 " in s.recv(1024):
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the extender server did not become ready")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--members", type=int, default=500, help="latency phase members")
    parser.add_argument("--warmup", type=int, default=20, help="members sent before measuring")
    parser.add_argument("--requests", type=int, default=4000, help="throughput phase requests")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--gpus", type=int, default=1, help="whole GPUs each member asks for")
    parser.add_argument(
        "--shuffle",
        action="store_true",
        help="send the names in a different order per member, as kube-scheduler's parallel "
        "filters do (its feasible list comes back in completion order)",
    )
    opts = parser.parse_args(argv)
    pin_client()
    names = [f"h100-{i:05d}" for i in range(opts.nodes)]
    all_names = [orjson.dumps(names)]
    if opts.shuffle:
        rng = random.Random(SHUFFLE_SEED)
        all_names = [orjson.dumps(rng.sample(names, len(names))) for _ in range(SHUFFLED_ORDERS)]
    port = free_port()
    proc = start_server(opts.nodes, port)
    try:
        wait_ready(port, proc)
        cores = {"server": cores_of(proc.pid), "client": cores_of(0)}
        stats = latency_phase(port, opts.members, all_names, opts.warmup, opts.gpus)
        phalanx = throughput_phase(
            port,
            proc.pid,
            "/filter",
            opts.members,
            opts.requests,
            opts.connections,
            all_names,
            opts.max_seconds,
            opts.gpus,
        )
        echo = throughput_phase(
            port, proc.pid, "/echo", 0, opts.requests, opts.connections, all_names, opts.max_seconds
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    report = {
        "nodes": opts.nodes,
        "gpus_per_member": opts.gpus,
        "shuffled": opts.shuffle,
        "cores": cores,
        "latency": {k: s.summary() for k, s in stats.items()},
        "throughput": {
            "connections": opts.connections,
            "filter+prioritize": {
                **phalanx.summary("requests", 1),
                **phalanx.summary("pairs", REQUESTS_PER_PAIR),
            },
            "echo": echo.summary("requests", 1),
        },
    }
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
