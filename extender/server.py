"""Running the ASGI app under uvicorn (one process, one event loop), with optional TLS and a
required client certificate."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import uvicorn
from phalanx.extender.app import ExtenderApp
from phalanx.extender.config import ServeConfig
from phalanx.extender.heap import keep_freed_memory
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CorkedTransport:
    """A transport whose writes within one turn of the event loop leave together, in one
    ``writelines`` (one ``writev`` on uvloop), in the order written.

    uvicorn writes a response's status line and headers, then its body, each with its own
    ``write``: two system calls, and with ``TCP_NODELAY`` two segments that each wake the
    client. The app sends both within one step of its task, so holding them until the loop's
    next turn (``call_soon``) costs no latency worth the name. ``close`` sends what is held
    first; everything else is the wrapped transport's."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending or self._transport.is_closing():
            return
        if len(pending) == 1:
            self._transport.write(pending[0])
        else:
            self._transport.writelines(pending)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CorkedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through :class:`CorkedTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CorkedTransport(transport, self.loop))  # type: ignore[arg-type]


def uvicorn_config(app: ExtenderApp, config: ServeConfig, **overrides: Any) -> uvicorn.Config:
    tls: dict[str, Any] = {}
    if config.tls.enabled:
        tls = {
            "ssl_certfile": config.tls.cert_file,
            "ssl_keyfile": config.tls.key_file,
            "ssl_ca_certs": config.tls.client_ca_file,
            "ssl_cert_reqs": ssl.CERT_REQUIRED if config.tls.require_client_cert else ssl.CERT_NONE,
        }
    options: dict[str, Any] = {
        "host": config.host,
        "port": config.port,
        "http": CorkedHttpProtocol,
        "loop": "auto",
        "lifespan": "on",
        "access_log": False,
        "proxy_headers": False,
        "log_level": "info",
        **tls,
        **overrides,
    }
    return uvicorn.Config(app, **options)


def serve(app: ExtenderApp, config: ServeConfig, **overrides: Any) -> None:
    keep_freed_memory()
    uvicorn.Server(uvicorn_config(app, config, **overrides)).run()
