"""The client side of ``phalanx status`` and ``phalanx explain``: GET a read-only endpoint of a
running extender, over HTTP or HTTPS with the same certificate files the webhook's TLS uses
(``--ca`` to verify the server, ``--cert``/``--key`` when it requires client certificates).

Only the standard library, so the commands (and the ``kubectl-phalanx`` plugin) work wherever
the package is installed, test extras or not.
"""

from __future__ import annotations

import json
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlencode

import click

SERVER_ENV = "PHALANX_SERVER"
DEFAULT_SERVER = "http://127.0.0.1:8888"
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Server:
    url: str
    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    def get(self, path: str, **query: str) -> dict[str, Any]:
        """The JSON document at ``path``; raises :class:`ServerError` with the server's
        ``Error`` message (or why it could not be reached)."""
        url = self.url.rstrip("/") + path + (f"?{urlencode(query)}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S, context=self._tls()) as reply:
                return json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                message = json.loads(body).get("Error") or body.decode()
            except (ValueError, AttributeError):
                message = body.decode(errors="replace")
            raise ServerError(f"{url}: {exc.code} {message}", exc.code) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServerError(f"cannot reach the extender at {self.url}: {reason}") from None

    def _tls(self) -> ssl.SSLContext | None:
        if not self.url.startswith("https://"):
            return None
        context = ssl.create_default_context(cafile=self.ca)
        if self.cert:
            context.load_cert_chain(self.cert, self.key)
        return context


class ServerError(RuntimeError):
    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def server_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--server``, ``--ca``, ``--cert``, ``--key`` and ``--json``, shared by both commands."""
    options = [
        click.option(
            "--server",
            envvar=SERVER_ENV,
            default=DEFAULT_SERVER,
            show_default=True,
            help=f"The extender's URL (or ${SERVER_ENV}).",
        ),
        click.option("--ca", type=click.Path(dir_okay=False), help="CA file to verify HTTPS."),
        click.option(
            "--cert", type=click.Path(dir_okay=False), help="Client certificate (mutual TLS)."
        ),
        click.option("--key", type=click.Path(dir_okay=False), help="Client certificate's key."),
        click.option("--json", "as_json", is_flag=True, help="Print the server's JSON."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def connect(server: str, ca: str | None, cert: str | None, key: str | None) -> Server:
    """Check the option combination and return the server to ask."""
    if (cert is None) != (key is None):
        fail("--cert and --key go together", EXIT_BAD_INPUT)
    if not server.startswith(("http://", "https://")):
        fail(f"--server {server}: expected http://HOST:PORT or https://HOST:PORT", EXIT_BAD_INPUT)
    return Server(server, ca, cert, key)


def fail(message: str, status: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(status)


def print_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=True))
