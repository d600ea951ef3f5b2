"""The HTTP face of the extender: a plain ASGI application served by uvicorn.

Verbs are POSTed JSON (``<prefix>/filter``, ``/prioritize``, ``/bind``, ``/preempt``). Filter,
prioritize and preempt run inline on the event loop (they are short and hold the planner lock
anyway); bind posts to the apiserver, so it runs on a thread pool and never stalls filters.

Error replies: kube-scheduler treats any status but 200 as a failure and drops the body, so a
bad filter or bind request is answered 200 with the message in ``Error`` (kube-scheduler logs
it and backs the pod off). Prioritize and preempt replies have no ``Error`` field: a bad request
gets 400 with ``{"Error": ...}``. A body over the size limit gets 413 before it is read whole.
Every reply carries a ``Server-Timing`` header with the handling time.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from phalanx.extender import wire
from phalanx.extender.args_decoder import ExtenderArgsDecoder
from phalanx.extender.bind_barrier import DEFAULT_BIND_BARRIER_S, BindBarrier
from phalanx.extender.binding import Binder
from phalanx.extender.consistency import ledger_problems
from phalanx.extender.debug_routes import debug_view
from phalanx.extender.expiry_timer import ExpiryTimer
from phalanx.extender.metrics import ExtenderMetrics
from phalanx.extender.planner import Planner
from phalanx.extender.pod_fields import shown
from phalanx.extender.rejection import listed_rejection_body, one_entry_rejection
from phalanx.extender.ui_routes import ui_view
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
"""A NodeNames filter for 10,000 nodes is about 200 KB; full Node objects (``Nodes`` mode) are
about 5 KB each, so 16 MiB covers ~3,000 of them: use ``nodeCacheCapable`` beyond that."""
DEFAULT_BIND_WORKERS = 16
JSON = b"application/json"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Backend(Protocol):
    """Where the app finds the planner (None until the cluster is synced) and the binder."""

    @property
    def planner(self) -> Planner | None: ...

    @property
    def binder(self) -> Binder: ...

    def ready(self) -> tuple[bool, str]: ...

    def debug_extra(self) -> dict[str, Any]: ...


class _TooLarge(Exception):
    pass


@dataclass
class AppOptions:
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    path_prefix: str = ""
    bind_workers: int = DEFAULT_BIND_WORKERS
    bind_barrier_s: float = DEFAULT_BIND_BARRIER_S
    """How long a gang's members wait at bind for the rest of the gang (0: no barrier)."""
    echo: bool = False
    """Serve ``/echo`` (replies with the request body): the baseline for load tests."""


class ExtenderApp:
    def __init__(self, backend: Backend, options: AppOptions | None = None) -> None:
        self.backend = backend
        self.options = options or AppOptions()
        self.metrics = ExtenderMetrics(lambda: backend.planner)
        self._decode_args = ExtenderArgsDecoder()
        self._executor = ThreadPoolExecutor(
            max_workers=self.options.bind_workers, thread_name_prefix="bind"
        )
        prefix = self.options.path_prefix.rstrip("/")
        self._verbs: dict[str, Callable[[bytes], tuple[int, Any]]] = {
            # a verb replies with a document to encode, or with the encoded bytes
            f"{prefix}/filter": self._filter,
            f"{prefix}/prioritize": self._prioritize,
            f"{prefix}/preempt": self._preempt,
        }
        self._bind_path = f"{prefix}/bind"
        self.barrier = BindBarrier(self.options.bind_barrier_s)
        self._expiry = ExpiryTimer(lambda: backend.planner)
        """Reservations expire on time while the server runs (started by the lifespan)."""
        self._histograms = {
            verb: self.metrics.latency.labels(verb=verb)
            for verb in ("filter", "prioritize", "preempt", "bind", "echo")
        }

    # ------------------------------------------------------------------ ASGI
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if method == "GET":
            await self._get(path, send, scope.get("query_string", b""))
            return
        if method != "POST":
            await _reply(send, 405, {"Error": f"method {method} not allowed"})
            return
        handler = self._verbs.get(path)
        is_bind = path == self._bind_path
        is_echo = self.options.echo and path == "/echo"
        if handler is None and not is_bind and not is_echo:
            await _reply(send, 404, {"Error": f"no extender verb at {shown(path, 200)}"})
            return
        try:
            body = await self._read_body(scope, receive)
        except _TooLarge:
            await _reply(
                send,
                413,
                {"Error": f"request body exceeds the {self.options.max_body_bytes}-byte limit"},
            )
            return
        start = time.perf_counter()
        if is_echo:
            await self._send(send, 200, body, start, "echo")
            return
        if self.backend.planner is None:
            status, reply = self._unready(path, self.backend.ready()[1])
            await self._send(send, status, wire.encode(reply), start, None)
            return
        if is_bind:
            status, reply = await self._bind(body)
            await self._send(send, status, wire.encode(reply), start, "bind")
            return
        status, reply = handler(body)
        encoded = reply if isinstance(reply, bytes) else wire.encode(reply)
        await self._send(send, status, encoded, start, path.rsplit("/", 1)[-1])

    async def _send(self, send: Send, status: int, body: bytes, start: float, verb: str | None):
        elapsed = time.perf_counter() - start
        if verb is not None:
            self._histograms[verb].observe(elapsed)
        headers = [
            (b"content-type", JSON),
            (b"content-length", str(len(body)).encode()),
            (b"server-timing", f"app;dur={elapsed * 1000:.3f}".encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.options.max_body_bytes
        for name, value in scope.get("headers") or ():
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                raise _TooLarge
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        return b"".join(chunks)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # The cluster model (every node, GPU and NIC) is built before serving and lives
                # as long as the process: moving it out of the collector's reach keeps full
                # collections from scanning it again and again (they showed as 5-10 ms stalls
                # on a 10,000-node cluster).
                gc.collect()
                gc.freeze()
                self._expiry.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self._expiry.stop()
                self._executor.shutdown(wait=False, cancel_futures=True)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _get(self, path: str, send: Send, query: bytes = b"") -> None:
        if path == "/healthz":
            await _reply(send, 200, {"status": "ok"})
        elif path == "/readyz":
            ok, why = self.backend.ready()
            await _reply(send, 200 if ok else 503, {"ready": ok, "reason": why})
        elif path == "/metrics":
            body = generate_latest(self.metrics.registry)
            headers = [(b"content-type", CONTENT_TYPE_LATEST.encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        elif path == "/debug/state":
            planner = self.backend.planner
            state = planner.snapshot() if planner is not None else {"ready": False}
            await _reply(send, 200, {**state, **self.backend.debug_extra()})
        elif path == "/debug/consistency":
            # a fresh list of every pod from the apiserver: never on the event loop, where it
            # would hold up every filter behind a slow or throttled apiserver
            try:
                report = await asyncio.to_thread(self._consistency)
            except Exception as exc:  # an unreachable apiserver is an answer, not a crash
                report = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            await _reply(send, 200, report)
        elif (view := debug_view(path, query, self.backend.planner)) is not None:
            await _reply(send, *view)  # /debug/queue, /debug/explain (extender/debug_routes.py)
        elif (page := ui_view(path, query, self.backend.planner)) is not None:
            await page.send(send)  # /ui: the read-only web page (extender/ui_routes.py)
        else:
            await _reply(send, 404, {"Error": f"nothing at {shown(path, 200)}"})

    def _consistency(self) -> dict[str, Any]:
        """The backend's check against the cluster where it has one (Kubernetes), else the
        ledger against its own pods (dry-run)."""
        check = getattr(self.backend, "consistency", None)
        if check is not None:
            return dict(check())
        planner = self.backend.planner
        if planner is None:
            return {"ok": False, "ready": False, "ledger": []}
        problems = ledger_problems(planner)
        return {"ok": not problems, "ready": True, "ledger": problems}

    # ------------------------------------------------------------------ verbs
    def _filter(self, body: bytes) -> tuple[int, Any]:
        try:
            args = self._decode_args(body)
        except wire.WireError as exc:
            return 200, wire.filter_reply([], error=f"bad filter request: {exc}")
        planner = self.backend.planner
        assert planner is not None
        try:
            decision = planner.filter(args.pod, args.node_names)
        except Exception as exc:  # a fault must reach kube-scheduler as an error, not a hang
            log.exception("filter failed")
            return 200, wire.filter_reply([], error=f"filter failed: {exc}")
        failed, unresolvable = decision.failed, decision.unresolvable
        if not decision.passing and not decision.error:
            one_entry = one_entry_rejection(failed, unresolvable)
            if one_entry is not None:
                failed, unresolvable = one_entry
            elif args.node_objects is None:
                body = listed_rejection_body(failed, unresolvable, decision.names_distinct)
                if body is not None:
                    return 200, body
        return 200, wire.filter_reply(
            decision.passing, failed, unresolvable, decision.error, args.node_objects
        )

    def _prioritize(self, body: bytes) -> tuple[int, Any]:
        try:
            args = self._decode_args(body)
        except wire.WireError as exc:
            return 400, {"Error": f"bad prioritize request: {exc}"}
        planner = self.backend.planner
        assert planner is not None
        try:
            scores = planner.prioritize(args.pod, args.node_names)
        except Exception as exc:
            log.exception("prioritize failed")
            return 500, {"Error": f"prioritize failed: {exc}"}
        return 200, wire.prioritize_reply(args.node_names, scores)

    def _preempt(self, body: bytes) -> tuple[int, Any]:
        try:
            args = wire.parse_preemption_args(wire.decode(body))
        except wire.WireError as exc:
            return 400, {"Error": f"bad preempt request: {exc}"}
        planner = self.backend.planner
        assert planner is not None
        try:
            victims = planner.preempt(args.pod, args.victims_by_node)
        except Exception as exc:
            log.exception("preempt failed")
            return 500, {"Error": f"preempt failed: {exc}"}
        return 200, wire.preemption_reply(victims, args.pdb_violations_by_node)

    async def _bind(self, body: bytes) -> tuple[int, Any]:
        """Wait at the gang's bind barrier on the event loop, then post the Binding from a
        worker thread (:mod:`extender.bind_barrier`)."""
        try:
            args = wire.parse_binding_args(wire.decode(body))
        except wire.WireError as exc:
            return 200, wire.binding_reply(f"bad bind request: {exc}")
        planner = self.backend.planner
        assert planner is not None
        error = await self.barrier.wait(planner, args.pod_namespace, args.pod_name)
        if error:
            return 200, wire.binding_reply(error)
        error = await asyncio.get_running_loop().run_in_executor(
            self._executor,
            planner.bind,
            args.pod_namespace,
            args.pod_name,
            args.pod_uid,
            args.node,
            self.backend.binder,
        )
        return 200, wire.binding_reply(error)

    def _unready(self, path: str, why: str) -> tuple[int, Any]:
        message = f"Phalanx is not ready: {why}"
        if path.endswith("/filter"):
            return 200, wire.filter_reply([], error=message)
        if path == self._bind_path:
            return 200, wire.binding_reply(message)
        return 503, {"Error": message}


async def _reply(send: Send, status: int, doc: Any) -> None:
    body = wire.encode(doc)
    headers = [(b"content-type", JSON), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
