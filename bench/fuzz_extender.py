"""Hostile input for the extender webhook: many mutated requests, in process, then a report.

Requests from :mod:`bench.fuzz_bodies` go straight into the ASGI app (no sockets, so the run
measures the extender and not the loopback) against a dry-run planner on a 4-node DGX H100
cluster. A filter that places its pod is sometimes followed by the bind kube-scheduler would
send, so that plans, binds, expiries (the planner's clock moves with the requests) and
preemptions happen among the garbage. Every reply is held to the contract:

- no 5xx, no exception out of the app, no traceback or ERROR record in the log;
- filter and bind always 200; prioritize and preempt 200 or 400;
- every rejection (400, or an ``Error`` saying the request was bad) names the field;
- after the run the ledger is consistent (:func:`extender.consistency.ledger_problems`).

``python -m phalanx.bench.fuzz_extender --bodies 100000 --seed 7`` prints counts per status
code and verb, the tracebacks logged, bodies/s and the ledger check; exit status 1 when any
contract is broken. ``tests/test_extender_fuzz.py`` runs the same checks under Hypothesis.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from phalanx.bench.fuzz_bodies import Draw, FuzzRequest, request
from phalanx.extender.app import AppOptions, ExtenderApp
from phalanx.extender.config import ServeConfig
from phalanx.extender.consistency import ledger_problems
from phalanx.extender.runtime import DryRunBackend, planner_factory
from phalanx.topology.presets import cluster_preset

CLUSTER = "dgx-h100:4"
MAX_BODY_BYTES = 1024 * 1024
START_S = 1_000_000.0
STEP_S = 1.0
"""The planner's clock moves this much per request (and now and then past the TTL), so that
reservations expire during a run, reproducibly."""
FIELD = re.compile(
    r"\b(Pod|Nodes|NodeNames|PodName|PodNamespace|PodUID|Node|NodeNameToVictims|"
    r"NodeNameToMetaVictims)\b|request body"
)
"""Wire field names; an error about the whole body names the body."""
BAD_REQUEST = re.compile(r"^bad (filter|prioritize|preempt|bind) request: ")
SEMANTIC_BIND = ("pod ", "node ", "gang ")
"""A well-formed bind can still fail (unknown pod, another node, already bound, its gang not
at the bind barrier): those errors name the pod, node or gang they are about."""
MAX_PROBLEMS_KEPT = 20
CHECK_EVERY = 1000
"""Bodies between two ledger checks in a long run (a check rebuilds a planner: ~0.1 s)."""


class Clock:
    """The planner's time, advanced by the driver."""

    def __init__(self, now: float = START_S) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class LogCapture(logging.Handler):
    """Every record at ERROR or above, and every record that carries a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)

    def __enter__(self) -> LogCapture:
        logging.getLogger().addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().removeHandler(self)


@dataclass
class Reply:
    status: int
    body: bytes
    exception: str = ""


@dataclass
class Tally:
    """What a run saw."""

    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    by_verb: Counter[tuple[str, int]] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    follow_up_binds: int = 0

    def note(self, req: FuzzRequest, reply: Reply, problems: Sequence[str]) -> None:
        self.requests += 1
        self.statuses[reply.status] += 1
        self.by_verb[(req.verb, reply.status)] += 1
        self.problem_count += len(problems)
        for p in problems:
            if len(self.problems) < MAX_PROBLEMS_KEPT:
                self.problems.append(f"{p} [{req.verb} {req.mutations}]")


class Fuzzer:
    """One dry-run extender and the requests sent to it."""

    def __init__(self, cluster: str = CLUSTER) -> None:
        self.clock = Clock()
        described = cluster_preset(cluster)
        self.nodes = [n.name for n in described.nodes]
        self.backend = DryRunBackend(planner_factory(ServeConfig(), self.clock)(described))
        # one request at a time cannot bring a gang's members to bind together: no barrier
        # (it would hold each such bind for its whole timeout); tests/ cover the barrier
        options = AppOptions(max_body_bytes=MAX_BODY_BYTES, bind_barrier_s=0)
        self.app = ExtenderApp(self.backend, options)
        self.tally = Tally()

    async def step(self, draw: Draw) -> None:
        """One generated request (and maybe the bind that follows a placed filter)."""
        self.clock.now += STEP_S if draw(50) else 400.0
        req = request(draw, self.nodes)
        reply = await call(self.app, req)
        self.tally.note(req, reply, check(req, reply))
        bind = follow_up_bind(req, reply)
        if bind is not None and draw(2):
            self.tally.follow_up_binds += 1
            reply = await call(self.app, bind)
            self.tally.note(bind, reply, check(bind, reply))

    async def close(self) -> None:
        """Shut the app down as uvicorn does (its bind thread pool)."""
        messages = iter([{"type": "lifespan.shutdown"}])

        async def receive() -> dict[str, Any]:
            return next(messages)

        async def send(message: dict[str, Any]) -> None:
            return None

        await self.app({"type": "lifespan"}, receive, send)

    def ledger_problems(self) -> list[str]:
        return ledger_problems(self.backend.planner)


async def call(app: ExtenderApp, req: FuzzRequest) -> Reply:
    """Send ``req`` through the ASGI interface as uvicorn would; an exception escaping the
    app is what uvicorn turns into a 500 and a logged traceback."""
    size = len(req.body)
    cuts = sorted({size * i // req.chunks for i in range(1, req.chunks)})
    pieces = [req.body[a:b] for a, b in zip([0, *cuts], [*cuts, size], strict=True)]
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
        for i, piece in enumerate(pieces)
    ]
    if req.disconnect:
        messages = [{**messages[0], "more_body": True}, {"type": "http.disconnect"}]
    queue = iter(messages)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(queue, {"type": "http.disconnect"})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": req.method,
        "scheme": "http",
        "path": req.path,
        "raw_path": req.raw_path if req.raw_path is not None else req.path.encode(),
        "query_string": req.query,
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), *req.headers],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8888),
    }
    try:
        await app(scope, receive, send)
    except Exception as exc:
        return Reply(500, b"", f"{type(exc).__name__}: {exc}")
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    if start is None:
        return Reply(500, b"", "no response started")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Reply(start["status"], body)


def follow_up_bind(req: FuzzRequest, reply: Reply) -> FuzzRequest | None:
    """The bind kube-scheduler sends after a filter that passed exactly one node."""
    if req.verb != "filter" or reply.status != 200:
        return None
    try:
        answer, asked = orjson.loads(reply.body), orjson.loads(req.body)
        (node,) = answer["NodeNames"]
        meta = asked["Pod"]["metadata"]
        doc = {
            "PodName": meta["name"],
            "PodNamespace": meta.get("namespace") or "default",
            "PodUID": meta.get("uid") or "",
            "Node": node,
        }
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    return FuzzRequest("POST", "/bind", orjson.dumps(doc), verb="bind", mutations=["follow-up"])


def check(req: FuzzRequest, reply: Reply) -> list[str]:
    """How the reply breaks the contract, [] when it does not."""
    if reply.exception:
        return [f"exception escaped the app: {reply.exception}"]
    if reply.status >= 500:
        return [f"status {reply.status}: {reply.body[:300]!r}"]
    if reply.status == 413 and any(h == b"content-length" for h, _ in req.headers):
        return []
    if req.verb == "get":
        return _check_read(req, reply)
    try:
        doc = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        return [f"status {reply.status} with a body that is not JSON: {reply.body[:200]!r}"]
    if req.verb in ("filter", "bind"):
        if reply.status != 200:
            return [f"{req.verb} answered {reply.status}; kube-scheduler drops non-200 bodies"]
        if not isinstance(doc, dict) or "Error" not in doc:
            return [f"{req.verb} reply has no Error field: {reply.body[:200]!r}"]
        return _check_error(req.verb, doc["Error"])
    if reply.status == 400:
        return _check_error(req.verb, doc.get("Error", "") if isinstance(doc, dict) else "", True)
    if reply.status != 200:
        return [f"{req.verb} answered {reply.status}"]
    if req.verb == "prioritize":
        ok = isinstance(doc, list) and all(
            isinstance(s, dict) and type(s.get("Score")) is int and 0 <= s["Score"] <= 10
            for s in doc
        )
        return [] if ok else [f"prioritize reply malformed: {reply.body[:200]!r}"]
    ok = isinstance(doc, dict) and isinstance(doc.get("NodeNameToMetaVictims"), dict)
    return [] if ok else [f"preempt reply malformed: {reply.body[:200]!r}"]


def _check_error(verb: str, error: Any, required: bool = False) -> list[str]:
    if not isinstance(error, str):
        return [f"{verb} Error is not a string: {error!r}"]
    if not error:
        return [f"{verb} answered 400 with no Error"] if required else []
    if BAD_REQUEST.match(error):
        return [] if FIELD.search(error) else [f"{verb} rejection names no field: {error!r}"]
    if verb == "bind" and error.startswith(SEMANTIC_BIND):
        return []
    return [f"{verb} error that is no rejection of the request: {error[:300]!r}"]


def _check_read(req: FuzzRequest, reply: Reply) -> list[str]:
    expected = {"/healthz": 200, "/readyz": 200, "/metrics": 200, "/debug/state": 200}
    if req.method == "GET" and req.path in expected:
        if reply.status != expected[req.path]:
            return [f"GET {req.path} answered {reply.status}"]
        if req.path != "/metrics":
            try:
                orjson.loads(reply.body)
            except orjson.JSONDecodeError:
                return [f"GET {req.path} body is not JSON"]
        return []
    allowed = (404,) if req.method == "GET" else (404, 405)
    if reply.status not in allowed and not (req.method == "POST" and reply.status == 200):
        return [f"{req.method} {req.path!r} answered {reply.status}"]
    return []


@dataclass
class Report:
    tally: Tally
    tracebacks: int
    errors_logged: int
    first_log: str
    ledger: list[str]
    """Problems found by every ledger check, each prefixed with when it ran."""
    seconds: float
    """Spent answering requests (the ledger checks excluded)."""
    ledger_checks: int = 0
    state: dict[str, int] = field(default_factory=dict)
    """What the planner held at the end: pods, gangs, plans, binds (a run that never places
    anything would test little)."""

    @property
    def ok(self) -> bool:
        return (
            not self.tally.problem_count
            and not self.tracebacks
            and not self.errors_logged
            and not self.ledger
        )


def run(bodies: int, seed: int, progress: bool = False, check_every: int = CHECK_EVERY) -> Report:
    """``bodies`` generated requests (follow-up binds come on top) from ``seed``; the ledger
    is checked every ``check_every`` bodies (0: only at the end) and at the end, so that a
    problem that a later request happens to undo is still seen."""
    rng = random.Random(seed)
    fuzzer = Fuzzer()
    ledger: list[str] = []
    checks = [0, 0.0]  # how many, seconds spent

    def check_ledger(when: str) -> None:
        start = time.perf_counter()
        ledger.extend(f"{when}: {p}" for p in fuzzer.ledger_problems())
        checks[0] += 1
        checks[1] += time.perf_counter() - start

    async def main() -> None:
        for i in range(bodies):
            await fuzzer.step(rng.randrange)
            if check_every and (i + 1) % check_every == 0 and i + 1 < bodies:
                check_ledger(f"after {i + 1} bodies")
            if progress and (i + 1) % 10_000 == 0:
                print(f"  {i + 1} bodies", file=sys.stderr, flush=True)
        await fuzzer.close()

    with LogCapture() as logs:
        start = time.perf_counter()
        asyncio.run(main())
        seconds = time.perf_counter() - start - checks[1]
        check_ledger("at the end")
    planner = fuzzer.backend.planner
    state = {
        "pods known": len(planner.pods),
        "gangs known": len(planner.gangs),
        "plans held": len(planner.state.holdings) - len(planner.external),
        "pods bound by others": len(planner.external),
        "binds recorded": len(fuzzer.backend.recorder.records),
        "reservation expiries": planner.stats.reservation_expiries,
        "free GPUs": int(planner.compiled.free_gpu_count.sum()),
    }
    first = logs.records[0] if logs.records else None
    return Report(
        fuzzer.tally,
        sum(1 for r in logs.records if r.exc_info),
        sum(1 for r in logs.records if r.levelno >= logging.ERROR),
        f"{first.name}: {first.getMessage()}" if first else "",
        ledger,
        seconds,
        int(checks[0]),
        state,
    )


def print_report(report: Report, bodies: int, seed: int) -> None:
    t = report.tally
    print(f"bodies generated: {bodies} (seed {seed}); follow-up binds: {t.follow_up_binds}")
    print(f"requests answered: {t.requests} in {report.seconds:.1f} s (ledger checks excluded)")
    print(f"bodies/s: {t.requests / report.seconds:,.0f}")
    print("status codes: " + ", ".join(f"{s}: {n}" for s, n in sorted(t.statuses.items())))
    for verb in ("filter", "prioritize", "preempt", "bind", "get"):
        row = sorted((s, n) for (v, s), n in t.by_verb.items() if v == verb)
        print(f"  {verb:<10} " + ", ".join(f"{s}: {n}" for s, n in row))
    print(f"contract violations: {t.problem_count}")
    for p in t.problems:
        print(f"  {p}")
    print(f"tracebacks logged: {report.tracebacks}; ERROR records: {report.errors_logged}")
    if report.first_log:
        print(f"  first: {report.first_log}")
    print("planner at the end: " + ", ".join(f"{k} {v}" for k, v in report.state.items()))
    verdict = "consistent" if not report.ledger else f"{len(report.ledger)} problems"
    print(f"ledger vs a rebuild from the same pods ({report.ledger_checks} checks): {verdict}")
    for p in report.ledger[:MAX_PROBLEMS_KEPT]:
        print(f"  {p}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bodies", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--progress", action="store_true", help="a line every 10,000 bodies")
    parser.add_argument(
        "--check-every",
        type=int,
        default=CHECK_EVERY,
        help="check the ledger every N bodies as well as at the end (0: only at the end)",
    )
    args = parser.parse_args(argv)
    report = run(args.bodies, args.seed, args.progress, args.check_every)
    print_report(report, args.bodies, args.seed)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
