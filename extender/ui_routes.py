"""``/ui``: a read-only web page over the extender's read-only endpoints.

The page is three static files shipped with the package (``extender/ui/``: HTML, a script and a
style sheet, no build step) and one document of its own, ``/ui/topology.json``
(:mod:`extender.fabric_view`); the queue and a gang's explanation come from ``/debug/queue`` and
``/debug/explain``, the same answers ``phalanx status`` and ``phalanx explain`` print. The page
lives at ``/ui/`` and fetches everything by relative URL, so it also works behind a proxy that
adds a path prefix (``kubectl proxy``); ``/ui`` redirects there, keeping a ``?gang=`` selection.
It is served by the same server, so the webhook's TLS and client-certificate settings cover it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

from phalanx.extender import wire
from phalanx.extender.fabric_view import fabric_document

if TYPE_CHECKING:
    from phalanx.extender.planner import Planner

Send = Callable[[dict[str, Any]], Awaitable[None]]

STATIC_FILES = {
    "/ui/": ("index.html", b"text/html; charset=utf-8"),
    "/ui/ui.js": ("ui.js", b"text/javascript; charset=utf-8"),
    "/ui/ui.css": ("ui.css", b"text/css; charset=utf-8"),
}
TOPOLOGY_PATH = "/ui/topology.json"
SECURITY_HEADERS = [
    # the page runs only its own script and reads only this server: what a page showing
    # names taken from Kubernetes objects should be held to
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:"),
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
]


@dataclass(frozen=True)
class Page:
    """One reply of the ``/ui`` routes, ready to send."""

    status: int
    content_type: bytes
    body: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    async def send(self, send: Send) -> None:
        """Send it as the ASGI response."""
        headers = [
            (b"content-type", self.content_type),
            (b"content-length", str(len(self.body)).encode()),
            *SECURITY_HEADERS,
            *self.headers,
        ]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def ui_view(path: str, query: bytes, planner: Planner | None) -> Page | None:
    """The reply for a GET of ``path`` under ``/ui``; None for any other path."""
    if path == "/ui":
        return Page(302, b"text/plain", b"", [(b"location", _redirect_target(query))])
    if path in STATIC_FILES:
        name, content_type = STATIC_FILES[path]
        return Page(200, content_type, static_file(name))
    if path == TOPOLOGY_PATH:
        if planner is None:
            return _json(503, {"Error": "Phalanx is not ready: no cluster view yet"})
        return _json(200, fabric_document(planner))
    if path.startswith("/ui/"):
        return _json(404, {"Error": "nothing at that /ui path"})
    return None


@cache
def static_file(name: str) -> bytes:
    """A file of ``extender/ui/``, read once (package data, so installed wheels have it)."""
    return resources.files("phalanx.extender").joinpath("ui", name).read_bytes()


def _redirect_target(query: bytes) -> bytes:
    """``ui/`` relative to ``/ui`` (so a proxy's prefix is kept), with only the ``gang``
    selection carried over, re-encoded: nothing else of the request reaches the header."""
    gang = parse_qs(query.decode("latin-1")).get("gang", [""])[0]
    return b"ui/" + (b"?" + urlencode({"gang": gang}).encode() if gang else b"")


def _json(status: int, doc: Any) -> Page:
    return Page(status, b"application/json", wire.encode(doc))
