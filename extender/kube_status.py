"""The status reporter's sink against a real cluster: PodGroup status patches and
``events.k8s.io/v1`` Events, posted from worker threads (:class:`ApiWorkers`).

A group's patch coalesces by group (only the newest waiting one is sent), an event's writes by
event name (its creation, then its series as the count grows). A group is patched at the
version the apiserver serves (found by discovery for the list, :mod:`extender.group_versions`).
Failures are counted and logged, never retried in a loop: the next change of the gang writes its
status again, and a lost event is only a lost event.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from kubernetes import client
from kubernetes.client.rest import ApiException
from phalanx.extender.api_retry import CONNECT_TIMEOUT_S
from phalanx.extender.api_workers import ApiWorkers
from phalanx.extender.config import IDENTITY_ENV
from phalanx.extender.gang_events import EventWrite
from phalanx.extender.gangs import GROUP_KINDS
from phalanx.extender.group_status import GroupPatch

log = logging.getLogger(__name__)

REPORTING_CONTROLLER = "phalanx.io/extender"
STATUS_WORKERS = 4
TIMEOUT_S = 10.0
HTTP_NOT_FOUND = 404
CREATED_KEPT = 8192


@dataclass
class ReportStats:
    status_patches: int = 0
    status_failures: int = 0
    events: int = 0
    event_failures: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class KubeStatusSink:
    """Posts group status and events; ``versions`` gives the version each group kind is
    served at (None when not served)."""

    def __init__(
        self,
        api_client: client.ApiClient,
        versions: Callable[[str], str | None],
        workers: int = STATUS_WORKERS,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self.custom = client.CustomObjectsApi(api_client)
        self.events = client.EventsV1Api(api_client)
        self.versions = versions
        self.timeout = (CONNECT_TIMEOUT_S, timeout_s)
        self.instance = (os.environ.get(IDENTITY_ENV) or socket.gethostname())[:128]
        self.stats = ReportStats()
        self._groups = {kind.source: kind for kind in GROUP_KINDS}
        self._created: dict[str, None] = {}
        """Events created (a later write of one is a series patch)."""
        self._created_lock = threading.Lock()
        self._workers = ApiWorkers("gang-status", workers, self._handle)

    def patch_group(self, patch: GroupPatch) -> None:
        self._workers.submit("status", patch.key, patch)

    def write_event(self, write: EventWrite) -> None:
        self._workers.submit("event", write.name, write)

    def stop(self) -> None:
        self._workers.stop()

    def wait_idle(self, timeout_s: float) -> bool:
        return self._workers.wait_idle(timeout_s)

    def _handle(self, kind: str, arg: GroupPatch | EventWrite) -> None:
        if isinstance(arg, GroupPatch):
            self._patch(arg)
        elif isinstance(arg, EventWrite):
            self._event(arg)

    def _patch(self, patch: GroupPatch) -> None:
        kind = self._groups[patch.source]
        version = self.versions(patch.source) or kind.version
        try:
            self.custom.patch_namespaced_custom_object_status(
                kind.group,
                version,
                patch.namespace,
                kind.plural,
                patch.name,
                patch.body,
                _content_type=patch.content_type,
                _preload_content=False,
                _request_timeout=self.timeout,
            )
            self.stats.status_patches += 1
        except ApiException as exc:
            self.stats.status_failures += 1
            if exc.status != HTTP_NOT_FOUND:
                log.warning(
                    "status of %s %s/%s: %s %s",
                    kind.group,
                    patch.namespace,
                    patch.name,
                    exc.status,
                    exc.reason,
                )

    def _event(self, write: EventWrite) -> None:
        event = write.event
        namespace = event.regarding.namespace
        series = None
        if write.count >= 2:
            series = {"count": write.count, "lastObservedTime": micro_time(write.last_s)}
        with self._created_lock:
            created = write.name in self._created
        try:
            if created:
                self.events.patch_namespaced_event(
                    write.name,
                    namespace,
                    {"series": series},
                    _content_type="application/merge-patch+json",
                    _preload_content=False,
                    _request_timeout=self.timeout,
                )
            else:
                body = {
                    "apiVersion": "events.k8s.io/v1",
                    "kind": "Event",
                    "metadata": {"name": write.name, "namespace": namespace},
                    "eventTime": micro_time(write.first_s),
                    "reportingController": REPORTING_CONTROLLER,
                    "reportingInstance": self.instance,
                    "action": event.action,
                    "reason": event.reason,
                    "note": event.note,
                    "type": event.type,
                    "regarding": event.regarding.as_dict(),
                }
                if series is not None:
                    body["series"] = series
                self.events.create_namespaced_event(
                    namespace, body, _preload_content=False, _request_timeout=self.timeout
                )
                with self._created_lock:
                    self._created[write.name] = None
                    while len(self._created) > CREATED_KEPT:
                        del self._created[next(iter(self._created))]
            self.stats.events += 1
        except ApiException as exc:
            self.stats.event_failures += 1
            log.warning(
                "event %s on %s %s/%s: %s %s",
                event.reason,
                event.regarding.kind,
                namespace,
                event.regarding.name,
                exc.status,
                exc.reason,
            )


def micro_time(at_s: float) -> str:
    """``metav1.MicroTime``: RFC 3339 with microseconds."""
    return datetime.fromtimestamp(at_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
