"""A fault-injecting HTTPS proxy between ``phalanx serve`` and kube-apiserver, on loopback.

It terminates TLS with a certificate signed by the harness CA (so the extender's kubeconfig
only changes its ``server``), forwards every request over TLS to the apiserver with the
extender's bearer token untouched, and streams the answers back as they come: a watch's
chunked body is passed on chunk by chunk, so events reach the extender when the apiserver
sends them. A scenario arms :class:`Fault` rules; each hits the next matching requests:

- ``status``: answer without forwarding (429 with ``Retry-After``, 410 Gone, 5xx), as a
  throttling or failing apiserver does;
- ``delay``: hold the request ``delay_s`` before forwarding it;
- ``hang``: never answer (until the client gives up and closes);
- ``drop``: forward, stream ``after_s`` seconds of the answer, then cut the connection (a
  watch broken mid-stream by a load balancer or an apiserver restart);
- ``gone_event``: forward a watch, then end it with an ``ERROR`` event of code 410, what the
  apiserver sends when the watch's resourceVersion was compacted away in etcd;
- ``lost_answer``: forward the request and read the apiserver's (successful) answer, then tell
  the client ``status`` (504 Gateway Timeout), or nothing at all with ``status=0`` (the
  connection is closed): a request that succeeded but whose answer was lost.

Plain asyncio streams, HTTP/1.1 only (the kubernetes Python client speaks nothing else); every
request is recorded in :attr:`ApiFaultProxy.log` for the scenario's assertions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

HEAD_LIMIT = 1 << 20
CHUNK_BYTES = 65536
REASONS = {
    200: "OK",
    410: "Gone",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
ACTIONS = ("status", "delay", "hang", "drop", "gone_event", "lost_answer")


@dataclass
class Fault:
    """What to do to the next ``times`` requests that match (``times=-1``: every one)."""

    action: str
    method: str | None = None
    path: str | None = None
    """A regular expression searched in the request's path."""
    watch: bool | None = None
    """Only watch requests (True), only other requests (False), or either (None)."""
    with_resource_version: bool | None = None
    """Only requests that name a non-empty ``resourceVersion`` (True), or that do not (False)."""
    status: int = 0
    retry_after_s: int | None = None
    delay_s: float = 0.0
    after_s: float = 0.0
    times: int = 1
    hits: int = 0

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}; expected one of {ACTIONS}")

    def matches(self, request: Request) -> bool:
        if self.times >= 0 and self.hits >= self.times:
            return False
        if self.method is not None and request.method != self.method:
            return False
        if self.path is not None and not re.search(self.path, request.path):
            return False
        if self.watch is not None and request.watch != self.watch:
            return False
        rv = bool(request.resource_version)
        return self.with_resource_version is None or rv == self.with_resource_version


@dataclass
class Request:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query)

    @property
    def watch(self) -> bool:
        return (self.query.get("watch") or [""])[0].lower() in ("true", "1")

    @property
    def resource_version(self) -> str:
        return (self.query.get("resourceVersion") or [""])[0]

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers if k.lower() == name), "")


@dataclass
class Record:
    """One request as the proxy saw it."""

    method: str
    path: str
    watch: bool
    resource_version: str
    action: str
    """The fault that hit it, or ``forward``."""
    status: int = 0
    """What the client was told (0: nothing, the connection was cut or held)."""
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0


class ApiFaultProxy:
    """Listens on 127.0.0.1:``port`` (HTTPS) and forwards to ``upstream`` (an https URL)."""

    def __init__(self, upstream: str, ca_cert: Path, cert: Path, key: Path, port: int) -> None:
        split = urlsplit(upstream)
        self.upstream_host = split.hostname or "127.0.0.1"
        self.upstream_port = split.port or 443
        self.port = port
        self.url = f"https://127.0.0.1:{port}"
        self.server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_context.load_cert_chain(str(cert), str(key))
        self.upstream_context = ssl.create_default_context(cafile=str(ca_cert))
        self.faults: list[Fault] = []
        self.log: list[Record] = []
        self.errors: list[str] = []
        """Unexpected failures of the proxy itself (a scenario may assert there are none)."""
        self._lock = threading.Lock()
        self._streams: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="api-fault-proxy", daemon=True)
        self._started = threading.Event()
        self._server: asyncio.Server | None = None

    # --- control, from the scenario's thread -----------------------------------------------
    def start(self) -> None:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the API fault proxy did not start")

    def stop(self) -> None:
        """Closes the listener and every connection (held and streaming ones included)."""

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def inject(self, *faults: Fault) -> list[Fault]:
        with self._lock:
            self.faults.extend(faults)
        return list(faults)

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def drop_watches(self) -> int:
        """Cuts every watch stream open now (no closing chunk): how many were cut."""
        done = threading.Event()
        count = [0]

        def cut() -> None:
            count[0] = len(self._streams)
            for writer in list(self._streams):
                writer.transport.abort()
            done.set()

        self._loop.call_soon_threadsafe(cut)
        done.wait(5)
        return count[0]

    def records(self, path: str | None = None, watch: bool | None = None) -> list[Record]:
        with self._lock:
            records = list(self.log)
        return [
            r
            for r in records
            if (path is None or re.search(path, r.path)) and (watch is None or r.watch == watch)
        ]

    # --- the server ------------------------------------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = server = self._loop.run_until_complete(
            asyncio.start_server(
                self._serve,
                "127.0.0.1",
                self.port,
                ssl=self.server_context,
                limit=HEAD_LIMIT,
            )
        )
        self._started.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()

    def _fault_for(self, request: Request) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(request):
                    fault.hits += 1
                    return fault
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                fault = self._fault_for(request)
                record = Record(
                    request.method,
                    request.path,
                    request.watch,
                    request.resource_version,
                    fault.action if fault else "forward",
                )
                with self._lock:
                    self.log.append(record)
                try:
                    upstream, keep = await self._handle(
                        request, fault, record, reader, writer, upstream
                    )
                finally:
                    record.seconds = time.monotonic() - record.started
                if not keep:
                    return
        except (ConnectionError, OSError, asyncio.IncompleteReadError, ssl.SSLError):
            return
        except Exception as exc:  # a request the proxy cannot parse ends its connection only
            with self._lock:
                self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            for w in (writer, upstream[1] if upstream else None):
                if w is not None:
                    with contextlib.suppress(Exception):
                        w.close()

    async def _handle(
        self,
        request: Request,
        fault: Fault | None,
        record: Record,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None,
    ) -> tuple[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None, bool]:
        """Serves one request; returns the upstream connection to reuse and whether the
        client connection stays open."""
        action = fault.action if fault else "forward"
        if fault is not None and action == "status":
            record.status = fault.status
            await _write_status(writer, fault.status, "injected", fault.retry_after_s)
            return upstream, True
        if action == "hang":
            await reader.read()  # until the client gives up and closes
            return upstream, False
        if fault is not None and action == "delay":
            await asyncio.sleep(fault.delay_s)
        if upstream is None or upstream[1].is_closing():
            upstream = await asyncio.open_connection(
                self.upstream_host,
                self.upstream_port,
                ssl=self.upstream_context,
                server_hostname=self.upstream_host,
                limit=HEAD_LIMIT,
            )
        up_reader, up_writer = upstream
        up_writer.write(_request_bytes(request))
        await up_writer.drain()
        head = await up_reader.readuntil(b"\r\n\r\n")
        status, headers = _parse_response_head(head)
        framing = _framing(request.method, status, headers)
        if fault is not None and action == "lost_answer":
            await _read_body(up_reader, framing, headers, None)  # the apiserver did it
            record.status = fault.status
            if fault.status == 0:  # no answer at all: the connection just closes
                return upstream, False
            await _write_status(writer, fault.status, "injected: the answer was lost", None)
            return upstream, framing != "close"
        record.status = status
        writer.write(head)
        await writer.drain()
        cut_at = None
        if fault is not None and action == "drop":
            cut_at = time.monotonic() + fault.after_s
        if fault is not None and action == "gone_event":
            await _write_chunk(writer, _gone_event(request.resource_version))
            await _write_chunk(writer, b"")
            up_writer.close()
            return None, True
        if request.watch:
            self._streams.add(writer)
        try:
            done = await _read_body(up_reader, framing, headers, writer, cut_at)
        finally:
            self._streams.discard(writer)
        if not done:  # cut on purpose: the client sees the stream break
            writer.transport.abort()
            up_writer.close()
            return None, False
        keep = framing != "close" and "close" not in _header(headers, "connection").lower()
        return (upstream if keep else None), keep


# --- HTTP/1.1 framing ---------------------------------------------------------------------
async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = [tuple(p.strip() for p in line.split(":", 1)) for line in lines[1:] if ":" in line]
    request = Request(method, target, headers)  # type: ignore[arg-type]
    if request.header("transfer-encoding").lower() == "chunked":
        request.body = await _read_chunks(reader)
        request.headers = [(k, v) for k, v in request.headers if k.lower() != "transfer-encoding"]
        request.headers.append(("Content-Length", str(len(request.body))))
    elif (length := request.header("content-length")).isdigit():
        request.body = await reader.readexactly(int(length))
    return request


def _request_bytes(request: Request) -> bytes:
    head = [f"{request.method} {request.target} HTTP/1.1"]
    head += [f"{k}: {v}" for k, v in request.headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + request.body


async def _read_chunks(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        data = await reader.readexactly(size + 2)
        if size == 0:
            return bytes(body)
        body += data[:-2]


def _parse_response_head(head: bytes) -> tuple[int, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = [(k.strip(), v.strip()) for k, _, v in (x.partition(":") for x in lines[1:] if x)]
    return status, headers


def _header(headers: list[tuple[str, str]], name: str) -> str:
    return next((v for k, v in headers if k.lower() == name), "")


def _framing(method: str, status: int, headers: list[tuple[str, str]]) -> str:
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return "none"
    if "chunked" in _header(headers, "transfer-encoding").lower():
        return "chunked"
    if _header(headers, "content-length").isdigit():
        return "length"
    return "close"


async def _read_body(
    reader: asyncio.StreamReader,
    framing: str,
    headers: list[tuple[str, str]],
    writer: asyncio.StreamWriter | None,
    cut_at: float | None = None,
) -> bool:
    """Passes the body to ``writer`` (or drops it) as it arrives, keeping its framing; False
    when it was cut at ``cut_at`` before its end."""

    async def out(data: bytes) -> None:
        if writer is not None:
            writer.write(data)
            await writer.drain()

    if framing == "none":
        return True
    if framing == "length":
        left = int(_header(headers, "content-length"))
        while left:
            data = await reader.read(min(left, CHUNK_BYTES))
            if not data:
                raise ConnectionError("upstream closed mid-body")
            left -= len(data)
            await out(data)
        return True
    if framing == "close":
        while data := await reader.read(CHUNK_BYTES):
            await out(data)
        return True
    while True:  # chunked: one chunk at a time, so each watch event is passed on at once
        timeout = None if cut_at is None else max(0.0, cut_at - time.monotonic())
        try:
            size_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout)
        except TimeoutError:
            return False
        size = int(size_line.split(b";")[0], 16)
        data = await reader.readexactly(size + 2)
        await out(size_line + data)
        if size == 0:
            return True
        if cut_at is not None and time.monotonic() >= cut_at:
            return False


async def _write_chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    await writer.drain()


def _gone_event(resource_version: str) -> bytes:
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f"too old resource version: {resource_version} (injected compaction)",
        "reason": "Expired",
        "code": 410,
    }
    return json.dumps({"type": "ERROR", "object": status}).encode() + b"\n"


async def _write_status(
    writer: asyncio.StreamWriter, status: int, message: str, retry_after_s: int | None
) -> None:
    body = json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": REASONS.get(status, "Failure").replace(" ", ""),
            "code": status,
        }
    ).encode()
    head = [
        f"HTTP/1.1 {status} {REASONS.get(status, 'Failure')}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if retry_after_s is not None:
        head.append(f"Retry-After: {retry_after_s}")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    await writer.drain()
