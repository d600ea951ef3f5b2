"""The extender's Service for several replicas on loopback: a TCP forwarder that sends each new
connection to a replica whose ``/readyz`` answers 200, as kube-proxy does with a Service's ready
endpoints. It is the only piece of Kubernetes networking the scenarios stand in for (no kubelet
or kube-proxy runs here); readiness is probed the way the chart's readinessProbe does it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import urllib.request

PROBE_PERIOD_S = 0.5
"""How often each replica's readiness is probed (the chart's probe runs every few seconds)."""
PROBE_TIMEOUT_S = 1.0
CHUNK_BYTES = 65536


class ServiceProxy:
    """Listens on ``port`` and forwards to the first ready ``(name, port)`` backend."""

    def __init__(self, port: int, backends: list[tuple[str, int]]) -> None:
        self.port = port
        self.backends = backends
        self.ready: dict[str, bool] = {name: False for name, _ in backends}
        self.routed: dict[str, int] = {name: 0 for name, _ in backends}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="service-proxy", daemon=True)
        self._started = threading.Event()

    def start(self) -> None:
        self._thread.start()
        self._started.wait(10)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def ready_backends(self) -> list[str]:
        return [name for name, _ in self.backends if self.ready.get(name)]

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port)
        )
        self._loop.create_task(self._probe())
        self._started.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()

    async def _probe(self) -> None:
        while True:
            for name, port in self.backends:
                self.ready[name] = await asyncio.to_thread(is_ready, port)
            await asyncio.sleep(PROBE_PERIOD_S)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        target = next(((n, p) for n, p in self.backends if self.ready.get(n)), None)
        if target is None:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target[1])
        except OSError:
            writer.close()
            return
        self.routed[target[0]] += 1
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK_BYTES):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def is_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/readyz", timeout=PROBE_TIMEOUT_S
        ) as reply:
            return bool(reply.status == 200)
    except Exception:  # any failure is "not ready", as for a kubelet probe
        return False
