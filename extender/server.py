"""Running the ASGI app under uvicorn (one process, one event loop), with optional TLS and a
required client certificate."""

from __future__ import annotations

import ssl
from typing import Any

import uvicorn
from phalanx.extender.app import ExtenderApp
from phalanx.extender.config import ServeConfig
from phalanx.extender.heap import keep_freed_memory


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
        "http": "httptools",
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
