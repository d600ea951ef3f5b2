"""Leader election for several extender replicas, on a ``coordination.k8s.io`` Lease.

Every replica runs the watches (Nodes, PodGroups, Pods), so a standby's view is warm; only the
leader answers the verbs. A standby reports not ready, and the Service (which routes only to
ready endpoints) sends kube-scheduler to the leader. On taking over, the new leader rebuilds
its plans from the Pods it has cached and one fresh list (what the old leader bound carries its
gang's whole plan in annotations, as after a restart), then reports ready. A leader that cannot
renew its Lease exits at once, as kube-scheduler does: two replicas must never both answer
filters, and a restarted process comes back as a standby.

The election itself is the kubernetes client's (``kubernetes.leaderelection`` with its
``LeaseLock``), the same Lease protocol client-go uses.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock
from phalanx.extender.app import Backend
from phalanx.extender.binding import Binder
from phalanx.extender.config import (
    DEFAULT_LEASE_NAMESPACE,
    IDENTITY_ENV,
    LEASE_NAMESPACE_ENV,
    LeaderElectionConfig,
)
from phalanx.extender.planner import Planner

log = logging.getLogger(__name__)

EXIT_LOST_LEASE = 3
"""Exit status of a leader that could not renew its Lease in time."""


class ElectedBackend(Backend, Protocol):
    """What the elected backend needs of the backend it fronts (``KubeBackend``)."""

    def start(self) -> None: ...

    def rebuild_plans(self) -> None: ...


def lease_identity(settings: LeaderElectionConfig) -> str:
    return (
        settings.identity or os.environ.get(IDENTITY_ENV) or f"{socket.gethostname()}-{os.getpid()}"
    )


def lease_namespace(settings: LeaderElectionConfig) -> str:
    return (
        settings.lease_namespace or os.environ.get(LEASE_NAMESPACE_ENV) or DEFAULT_LEASE_NAMESPACE
    )


class LeaderElectedBackend:
    """A backend that serves the verbs only while this replica holds the Lease."""

    def __init__(
        self,
        inner: ElectedBackend,
        api_client: client.ApiClient,
        settings: LeaderElectionConfig,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.inner = inner
        self.settings = settings
        self.identity = lease_identity(settings)
        self.namespace = lease_namespace(settings)
        self._api_client = api_client
        self._leading = threading.Event()
        self._on_lost = on_lost or _exit_lost_lease
        self._why = "standby: waiting for the Lease"

    # ------------------------------------------------------------------ Backend protocol
    @property
    def planner(self) -> Planner | None:
        return self.inner.planner if self._leading.is_set() else None

    @property
    def binder(self) -> Binder:
        return self.inner.binder

    @property
    def leading(self) -> bool:
        return self._leading.is_set()

    def ready(self) -> tuple[bool, str]:
        if not self._leading.is_set():
            return False, self._why
        return self.inner.ready()

    def debug_extra(self) -> dict[str, Any]:
        extra = dict(self.inner.debug_extra())
        extra["leader_election"] = {
            "identity": self.identity,
            "lease": f"{self.namespace}/{self.settings.lease_name}",
            "leading": self._leading.is_set(),
        }
        return extra

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.inner.start()
        thread = threading.Thread(target=self._elect, name="leader-election", daemon=True)
        thread.start()

    def _elect(self) -> None:
        lock = LeaseLock(self.settings.lease_name, self.namespace, self.identity)
        # its own connection pool, and a timeout on every call: a Lease request stuck behind
        # the watches' connections would let the Lease lapse (leader) or never be seen lapsing
        # (standby)
        own_client = client.ApiClient(self._api_client.configuration)
        lock.api_instance = _TimedLeaseApi(
            client.CoordinationV1Api(own_client), float(self.settings.retry_period_s)
        )
        config = electionconfig.Config(
            lock,
            lease_duration=self.settings.lease_duration_s,
            renew_deadline=self.settings.renew_deadline_s,
            retry_period=self.settings.retry_period_s,
            onstarted_leading=self._lead,
            onstopped_leading=self._lost,
        )
        log.info(
            "leader election: %s contends for Lease %s/%s",
            self.identity,
            self.namespace,
            self.settings.lease_name,
        )
        while True:
            try:
                # returns only after losing the Lease, and _lost() has then ended the process
                leaderelection.LeaderElection(config).run()
            except Exception:
                log.exception("leader election: the elector failed")
            if self._leading.is_set():
                self._lost()
                return
            threading.Event().wait(self.settings.retry_period_s)

    def _lead(self) -> None:
        """Runs in the elector's thread once the Lease is ours: wait for the watches' first
        sync, rebuild the plans from the cluster, then take requests."""
        self._why = "leader: syncing with the cluster"
        while self.inner.planner is None:
            threading.Event().wait(0.1)
        self.inner.rebuild_plans()
        self._leading.set()
        log.info(
            "leader election: %s leads; serving filter, prioritize, bind, preempt", self.identity
        )

    def _lost(self) -> None:
        self._leading.clear()
        self._why = "lost the Lease"
        log.error("leader election: %s could not renew the Lease; exiting", self.identity)
        self._on_lost()


class _TimedLeaseApi:
    """The three Lease calls the client's LeaseLock makes, each with a request timeout."""

    def __init__(self, api: client.CoordinationV1Api, timeout_s: float) -> None:
        self.api, self.timeout_s = api, timeout_s

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A timeout or a dropped connection becomes an ``ApiException``, the one error the
        LeaseLock handles (as a failed try); anything else would end the elector's thread."""
        try:
            return method(*args, _request_timeout=self.timeout_s, **kwargs)
        except ApiException:
            raise
        except Exception as exc:
            raise ApiException(status=0, reason=f"{type(exc).__name__}: {exc}") from None

    def read_namespaced_lease(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self.api.read_namespaced_lease, *args, **kwargs)

    def create_namespaced_lease(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self.api.create_namespaced_lease, *args, **kwargs)

    def replace_namespaced_lease(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self.api.replace_namespaced_lease, *args, **kwargs)


def _exit_lost_lease() -> None:
    # no clean shutdown: another replica may already be answering filters
    os._exit(EXIT_LOST_LEASE)
