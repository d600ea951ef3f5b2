"""The fake apiserver's object store (:mod:`tests.fake_apiserver`): objects by resource, the
event log that watches replay (compacted past :data:`EVENT_LOG_LIMIT`), and what tests check
afterwards (bindings, evictions, status patches, Events)."""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from typing import Any

EVENT_LOG_LIMIT = 10_000
"""Older events are compacted away: a watch from before them gets 410 Gone."""

NODES = "nodes"
PODS = "pods"
GROUP_RESOURCES = {
    "/apis/scheduling.x-k8s.io/v1alpha1/podgroups": "podgroups.scheduling.x-k8s.io",
    "/apis/scheduling.volcano.sh/v1beta1/podgroups": "podgroups.scheduling.volcano.sh",
    "/apis/scheduling.k8s.io/v1beta1/podgroups": "podgroups.scheduling.k8s.io/v1beta1",
    "/apis/scheduling.k8s.io/v1alpha2/podgroups": "podgroups.scheduling.k8s.io/v1alpha2",
}


@dataclass
class _Event:
    rv: int
    resource: str
    kind: str
    obj: dict[str, Any]


@dataclass
class ApiStore:
    """The apiserver's objects and its event log (what a watch replays), with the record
    of every write a test inspects; :class:`tests.fake_apiserver.FakeApiServer` serves it."""

    objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = field(default_factory=dict)
    events: list[_Event] = field(default_factory=list)
    bindings: list[dict[str, Any]] = field(default_factory=list)
    """Every binding request received, accepted or not."""
    evictions: list[str] = field(default_factory=list)
    """``namespace/name`` of every pod evicted."""
    status_patches: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    """(resource, ``namespace/name``, body) of every PodGroup status patch."""
    k8s_events: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    """events.k8s.io/v1 Events by (namespace, name)."""
    fail_bindings: int = 0
    """Answer the next N binding requests with 500 (fault injection)."""
    served_groups: set[str] = field(default_factory=lambda: set(GROUP_RESOURCES.values()))
    rv: int = 1
    cond: threading.Condition = field(default_factory=threading.Condition)
    compacted_rv: int = 0

    def _put(self, resource: str, obj: dict[str, Any], kind: str) -> dict[str, Any]:
        with self.cond:
            self.rv += 1
            meta = obj.setdefault("metadata", {})
            meta["resourceVersion"] = str(self.rv)
            key = (meta.get("namespace", ""), meta["name"])
            store = self.objects.setdefault(resource, {})
            if kind == "DELETED":
                store.pop(key, None)
            else:
                store[key] = obj
            self.events.append(_Event(self.rv, resource, kind, copy.deepcopy(obj)))
            if len(self.events) > EVENT_LOG_LIMIT:
                dropped = self.events[: len(self.events) - EVENT_LOG_LIMIT]
                self.compacted_rv = dropped[-1].rv
                del self.events[: len(dropped)]
            self.cond.notify_all()
            return obj

    def get(self, resource: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        with self.cond:
            obj = self.objects.get(resource, {}).get((namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def add_node(self, node: dict[str, Any]) -> None:
        self._put(NODES, copy.deepcopy(node), "ADDED")

    def delete_node(self, name: str) -> None:
        node = self.get(NODES, name)
        if node is not None:
            self._put(NODES, node, "DELETED")

    def add_pod(self, pod: dict[str, Any]) -> dict[str, Any]:
        return copy.deepcopy(self._put(PODS, copy.deepcopy(pod), "ADDED"))

    def update_pod(self, pod: dict[str, Any]) -> None:
        self._put(PODS, copy.deepcopy(pod), "MODIFIED")

    def delete_pod(self, namespace: str, name: str) -> None:
        pod = self.get(PODS, name, namespace)
        if pod is not None:
            self._put(PODS, pod, "DELETED")

    def set_pod_phase(self, namespace: str, name: str, phase: str) -> None:
        pod = self.get(PODS, name, namespace)
        assert pod is not None, f"no pod {namespace}/{name}"
        pod.setdefault("status", {})["phase"] = phase
        self.update_pod(pod)

    def add_group(self, api_path: str, obj: dict[str, Any]) -> None:
        self._put(GROUP_RESOURCES[api_path], copy.deepcopy(obj), "ADDED")

    def pod(self, namespace: str, name: str) -> dict[str, Any]:
        pod = self.get(PODS, name, namespace)
        assert pod is not None, f"no pod {namespace}/{name}"
        return pod
