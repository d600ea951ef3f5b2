"""List-then-watch of one resource through the ``kubernetes`` client, like client-go's
reflector: a full list (which replaces the local copy), then a watch from the list's
resourceVersion; on ``410 Gone`` or a broken stream, list again.

Objects stay plain dicts (``_preload_content=False``): the planner reads a few fields of each
and model deserialization would cost more than everything else it does.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from kubernetes.client.rest import ApiException
from kubernetes.watch.watch import iter_resp_lines

log = logging.getLogger(__name__)

HTTP_GONE = 410
HTTP_NOT_FOUND = 404
RETRY_S = 1.0
"""Pause before listing again after an error."""
ABSENT_RETRY_S = 60.0
"""Pause before looking again for a resource the cluster does not serve (a CRD not installed)."""

ListFn = Callable[..., Any]


@dataclass
class Handlers:
    replace: Callable[[list[dict[str, Any]]], None]
    """A full list: the complete current set of objects."""
    upsert: Callable[[dict[str, Any]], None]
    delete: Callable[[dict[str, Any]], None]


def list_objects(list_fn: ListFn) -> tuple[list[dict[str, Any]], str]:
    resp = list_fn(_preload_content=False)
    doc = orjson.loads(resp.data)
    return doc.get("items") or [], (doc.get("metadata") or {}).get("resourceVersion") or ""


class Reflector(threading.Thread):
    """Keeps ``handlers`` up to date with one resource until ``stop`` is set."""

    def __init__(
        self,
        name: str,
        list_fn: ListFn,
        handlers: Handlers,
        stop: threading.Event,
        watch_timeout_s: int,
        resource_version: str | None = None,
    ) -> None:
        super().__init__(name=f"reflector-{name}", daemon=True)
        self.resource = name
        self.list_fn = list_fn
        self.handlers = handlers
        self.stop_event = stop
        self.watch_timeout_s = watch_timeout_s
        self.resource_version = resource_version

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                if self.resource_version is None:
                    items, self.resource_version = list_objects(self.list_fn)
                    self.handlers.replace(items)
                self._watch()
            except ApiException as exc:
                self.resource_version = None
                if exc.status == HTTP_NOT_FOUND:
                    log.info("%s: not served by this cluster; looking again later", self.resource)
                    self.stop_event.wait(ABSENT_RETRY_S)
                elif exc.status != HTTP_GONE:
                    log.warning("%s: %s; listing again", self.resource, exc.reason)
                    self.stop_event.wait(RETRY_S)
            except Exception as exc:  # a broken stream or handler must not end the reflector
                log.warning("%s: %s; listing again", self.resource, exc)
                self.resource_version = None
                self.stop_event.wait(RETRY_S)

    def _watch(self) -> None:
        resp = self.list_fn(
            watch=True,
            resource_version=self.resource_version,
            timeout_seconds=self.watch_timeout_s,
            allow_watch_bookmarks=True,
            _preload_content=False,
        )
        try:
            for line in iter_resp_lines(resp):
                if self.stop_event.is_set():
                    return
                if not line:
                    continue
                event = orjson.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                rv = (obj.get("metadata") or {}).get("resourceVersion")
                if kind in ("ADDED", "MODIFIED"):
                    self.handlers.upsert(obj)
                elif kind == "DELETED":
                    self.handlers.delete(obj)
                if rv:
                    self.resource_version = rv
        finally:
            resp.close()
            resp.release_conn()
