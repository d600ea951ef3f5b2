"""Posting Bindings through the ``kubernetes`` client.

``create_namespaced_pod_binding`` returns a ``metav1.Status``, which the client cannot
deserialize as a Binding (kubernetes-client/python#547), so the call is made with
``_preload_content=False``. A 409 means the pod is already bound (or its UID changed): the pod
is read back, and a pod already on the requested node counts as success (idempotent binds).

A bind whose answer is lost is the dangerous case: a timeout, a dropped connection or a 504
from a proxy may come *after* the apiserver stored the binding. Posting again blindly would
get a 409 at best; reporting failure would make kube-scheduler retry a pod that is in fact
bound, and count the bind as failed while its GPUs are in use. So after any transient failure
the pod is read back first: on the requested node it is a success (counted once), on another
node a failure that says where it is, unbound a new try after a backoff (at least the
``Retry-After`` asked for), all within ``timeout_s`` so kube-scheduler's own extender timeout
(``httpTimeout``, 30 s in the chart) is not reached first.
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
from kubernetes import client
from kubernetes.client.rest import ApiException
from phalanx.extender.api_retry import (
    CONNECT_TIMEOUT_S,
    Backoff,
    is_transient,
    retry_after_s,
)
from phalanx.extender.binding import BindOutcome, BindRequest
from phalanx.extender.config import DEFAULT_BIND_TIMEOUT_S

log = logging.getLogger(__name__)

HTTP_CONFLICT = 409
TRIES_PER_TIMEOUT = 3
"""Each POST may take a third of the bind's time, so a hung one leaves room for two more."""


@dataclass
class BinderStats:
    posts: int = 0
    retries: int = 0
    confirmed_after_error: int = 0
    """Binds whose answer was lost (timeout, 5xx) but which the read-back found done."""
    conflicts_confirmed: int = 0
    """409 answers where the pod was already on the requested node."""

    def as_dict(self) -> dict[str, int]:
        return {
            "posts": self.posts,
            "retries": self.retries,
            "confirmed_after_error": self.confirmed_after_error,
            "conflicts_confirmed": self.conflicts_confirmed,
        }


class KubeBinder:
    def __init__(
        self,
        api_client: client.ApiClient,
        timeout_s: float = DEFAULT_BIND_TIMEOUT_S,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.core = client.CoreV1Api(api_client)
        self.timeout_s = timeout_s
        self.sleep = sleep
        self.clock = clock
        self.stats = BinderStats()
        self._stats_lock = threading.Lock()

    def bind(self, request: BindRequest) -> BindOutcome:
        """Binds ``request``'s pod, retrying transient failures until ``timeout_s``."""
        where = f"binding {request.namespace}/{request.name} to {request.node}"
        deadline = self.clock() + self.timeout_s
        backoff = Backoff(initial_s=0.2, cap_s=2.0)
        while True:
            try_timeout = max(0.1, min(self.timeout_s / TRIES_PER_TIMEOUT, deadline - self.clock()))
            try:
                self._count("posts")
                self._post(request, try_timeout)
                return BindOutcome(True, bound_node=request.node)
            except ApiException as exc:
                message = f"{where}: {exc.status} {_status_message(exc)}"
                if exc.status == HTTP_CONFLICT:
                    node = self._current_node(request, try_timeout)
                    if node == request.node:
                        self._count("conflicts_confirmed")
                        return BindOutcome(True, bound_node=node)
                    return BindOutcome(False, message, node)
                if not is_transient(exc):
                    return BindOutcome(False, message)
                retry_after = retry_after_s(exc)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                message = f"{where}: {type(exc).__name__}: {exc}"
                retry_after = None
            # The answer was lost or refused for now; the bind may still have happened.
            node = self._current_node(request, try_timeout)
            if node == request.node:
                self._count("confirmed_after_error")
                log.info("%s: answer lost (%s), but the pod is bound there", where, message)
                return BindOutcome(True, bound_node=node)
            if node:
                return BindOutcome(False, f"{message}; the pod is on {node!r}", node)
            delay = backoff.next_delay(retry_after)
            if self.clock() + delay >= deadline:
                return BindOutcome(False, f"{message} (gave up after {backoff.attempt} retries)")
            log.warning("%s; retrying in %.2f s", message, delay)
            self._count("retries")
            self.sleep(delay)

    def _post(self, request: BindRequest, timeout_s: float) -> None:
        body = client.V1Binding(
            metadata=client.V1ObjectMeta(
                name=request.name,
                namespace=request.namespace,
                uid=request.uid or None,
                annotations=request.annotations,
            ),
            target=client.V1ObjectReference(api_version="v1", kind="Node", name=request.node),
        )
        self.core.create_namespaced_pod_binding(
            request.name,
            request.namespace,
            body,
            _preload_content=False,
            _request_timeout=(CONNECT_TIMEOUT_S, timeout_s),
        )

    def _current_node(self, request: BindRequest, timeout_s: float) -> str:
        """The node the pod is bound to now, '' when unbound, unreadable or another pod (a
        new UID under the same name)."""
        try:
            resp = self.core.read_namespaced_pod(
                request.name,
                request.namespace,
                _preload_content=False,
                _request_timeout=(CONNECT_TIMEOUT_S, timeout_s),
            )
            pod = orjson.loads(resp.data)
        except (ApiException, urllib3.exceptions.HTTPError, OSError, orjson.JSONDecodeError):
            return ""
        if request.uid and (pod.get("metadata") or {}).get("uid") != request.uid:
            return ""
        return (pod.get("spec") or {}).get("nodeName") or ""

    def _count(self, name: str) -> None:
        with self._stats_lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)


def _status_message(exc: ApiException) -> str:
    try:
        doc: Any = orjson.loads(exc.body or b"")
    except orjson.JSONDecodeError:
        return str(exc.reason)
    return str(doc.get("message") or exc.reason) if isinstance(doc, dict) else str(exc.reason)
