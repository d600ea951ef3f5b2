"""List-then-watch of one resource through the ``kubernetes`` client, like client-go's
reflector: a full list (which replaces the local copy), then a watch from the list's
resourceVersion.

What ends a watch decides what comes next, as in client-go:

- the server closes it (its ``timeoutSeconds``) or a proxy drops it: watch again from the last
  resourceVersion seen, no list (a re-list of every pod on each dropped connection would cost
  the apiserver far more than the watch);
- ``410 Gone`` (as a status or as an ``ERROR`` event: the resourceVersion was compacted away in
  etcd): list again at once, since no watch can resume from there;
- throttling (429), server errors, timeouts, broken connections: wait a backoff
  (:mod:`extender.api_retry`, at least the ``Retry-After`` asked for), then watch again from the
  same resourceVersion, or list again if the list itself failed.

Every call has a timeout: a list gets ``request_timeout_s``, a watch a read timeout a little
longer than the ``timeoutSeconds`` it asks the server for, so a hung connection is noticed and
replaced instead of leaving the cache silently stale.

Objects stay plain dicts (``_preload_content=False``): the planner reads a few fields of each
and model deserialization would cost more than everything else it does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import urllib3
from kubernetes.client.rest import ApiException
from kubernetes.watch.watch import iter_resp_lines
from phalanx.extender.api_retry import CONNECT_TIMEOUT_S, Backoff, retry_after_s

log = logging.getLogger(__name__)

HTTP_GONE = 410
HTTP_NOT_FOUND = 404
ABSENT_RETRY_S = 60.0
"""Pause before looking again for a resource the cluster does not serve (a CRD not installed)."""
DEFAULT_REQUEST_TIMEOUT_S = 30.0
WATCH_READ_GRACE_S = 10.0
"""A watch's read timeout is its ``timeoutSeconds`` plus this: the server ends a healthy watch
by then, so a longer silence is a hung connection."""
SHORT_WATCH_S = 1.0
"""A watch that ends sooner than this with no event counts as a failure (backoff), so a proxy
that closes every watch at once is not hammered in a loop."""

ListFn = Callable[..., Any]


@dataclass
class Handlers:
    replace: Callable[[list[dict[str, Any]]], None]
    """A full list: the complete current set of objects."""
    upsert: Callable[[dict[str, Any]], None]
    delete: Callable[[dict[str, Any]], None]


@dataclass
class ReflectorStats:
    """What happened to one reflector, for /debug/state and the fault scenarios."""

    lists: int = 0
    watches: int = 0
    events: int = 0
    gone: int = 0
    """410 answers (a re-list followed)."""
    errors: int = 0
    """Failed lists or watches, each followed by a backoff."""
    last_error: str = ""
    backoff_s: float = 0.0
    """Total time spent waiting in backoffs."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "lists": self.lists,
            "watches": self.watches,
            "events": self.events,
            "gone": self.gone,
            "errors": self.errors,
            "last_error": self.last_error,
            "backoff_s": round(self.backoff_s, 3),
        }


def list_objects(
    list_fn: ListFn, timeout_s: float | None = DEFAULT_REQUEST_TIMEOUT_S
) -> tuple[list[dict[str, Any]], str]:
    """Every object and the list's resourceVersion, within ``timeout_s`` per read."""
    kwargs: dict[str, Any] = {"_preload_content": False}
    if timeout_s is not None:
        kwargs["_request_timeout"] = (CONNECT_TIMEOUT_S, timeout_s)
    resp = list_fn(**kwargs)
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
        request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(name=f"reflector-{name}", daemon=True)
        self.resource = name
        self.list_fn = list_fn
        self.handlers = handlers
        self.stop_event = stop
        self.watch_timeout_s = watch_timeout_s
        self.resource_version = resource_version
        self.request_timeout_s = request_timeout_s
        self.backoff = backoff or Backoff(initial_s=0.5, cap_s=10.0)
        self.stats = ReflectorStats()

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                if self.resource_version is None:
                    items, rv = list_objects(self.list_fn, self.request_timeout_s)
                    self.stats.lists += 1
                    self.handlers.replace(items)
                    self.resource_version = rv
                    self.backoff.reset()
                if self._watch():
                    self.backoff.reset()
                else:
                    self._pause(None, "the watch ended at once")
            except ApiException as exc:
                if exc.status == HTTP_GONE:
                    self.stats.gone += 1
                    log.info("%s: 410 Gone (%s); listing again", self.resource, exc.reason)
                    self.resource_version = None
                elif exc.status == HTTP_NOT_FOUND:
                    log.info("%s: not served by this cluster; looking again later", self.resource)
                    self.resource_version = None
                    self.stop_event.wait(ABSENT_RETRY_S)
                else:
                    self._pause(retry_after_s(exc), f"{exc.status} {exc.reason}")
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                self._pause(None, f"{type(exc).__name__}: {exc}")
            except Exception as exc:  # a bad event or handler: the cache may be off, list again
                log.exception("%s: listing again", self.resource)
                self.resource_version = None
                self._pause(None, f"{type(exc).__name__}: {exc}")

    def _pause(self, retry_after: float | None, why: str) -> None:
        """Back off before the next try; the resourceVersion is kept, so the watch resumes
        where it was (or the failed list is tried again)."""
        delay = self.backoff.next_delay(retry_after)
        self.stats.errors += 1
        self.stats.last_error = why
        self.stats.backoff_s += delay
        log.warning("%s: %s; retrying in %.2f s", self.resource, why, delay)
        self.stop_event.wait(delay)

    def _watch(self) -> bool:
        """Follows one watch until it ends; True if it was worth anything (it delivered an
        event or lasted a while), False if it ended at once."""
        started = time.monotonic()
        resp = self.list_fn(
            watch=True,
            resource_version=self.resource_version,
            timeout_seconds=self.watch_timeout_s,
            allow_watch_bookmarks=True,
            _preload_content=False,
            _request_timeout=(CONNECT_TIMEOUT_S, self.watch_timeout_s + WATCH_READ_GRACE_S),
        )
        self.stats.watches += 1
        delivered = 0
        try:
            for line in iter_resp_lines(resp):
                if self.stop_event.is_set():
                    return True
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
                delivered += 1
                self.stats.events += 1
        finally:
            resp.close()
            resp.release_conn()
        return delivered > 0 or time.monotonic() - started >= SHORT_WATCH_S
