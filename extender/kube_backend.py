"""The extender against a real cluster: a watch-based cache of Nodes, Pods and PodGroups.

Start-up: list Nodes (-> topology), PodGroups and Pods, rebuild every allocation and
reservation from the bound pods (``Planner.recover``), then watch all of them, and the
PodDisruptionBudgets that Phalanx's whole-gang preemption honours. Only then is the
webhook ready. Node changes that matter to the topology (labels, the discovery annotation,
allocatable, taints) are folded in by a refresher at most every ``topologyRefreshSeconds``;
heartbeat-only updates are ignored.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import client
from phalanx.extender.api_retry import with_transport_retries
from phalanx.extender.binding import Binder
from phalanx.extender.config import KubeConfig
from phalanx.extender.consistency import ledger_problems, truth_problems
from phalanx.extender.disruption_budgets import DisruptionBudgets
from phalanx.extender.gangs import GROUP_KINDS, GroupKind
from phalanx.extender.group_versions import ServedGroupKind
from phalanx.extender.kube_binder import KubeBinder
from phalanx.extender.kube_status import KubeStatusSink
from phalanx.extender.planner import Planner
from phalanx.extender.pod_actions import KubePodActions, PodRef
from phalanx.extender.podspec import namespace_of, uid_of
from phalanx.extender.reflector import HTTP_NOT_FOUND, Handlers, Reflector, list_objects
from phalanx.extender.status_reporter import GangReporter
from phalanx.topology.discovery import ANNOTATION_GPU_TOPOLOGY
from phalanx.topology.kube import MalformedNodeError, cluster_from_nodes
from phalanx.topology.model import Cluster

log = logging.getLogger(__name__)

STARTUP_RETRY_S = 2.0


def node_fingerprint(node: dict[str, Any]) -> tuple[Any, ...]:
    """The parts of a Node the topology is built from."""
    meta = node.get("metadata") or {}
    spec = node.get("spec") or {}
    status = node.get("status") or {}
    return (
        tuple(sorted((meta.get("labels") or {}).items())),
        (meta.get("annotations") or {}).get(ANNOTATION_GPU_TOPOLOGY),
        tuple(sorted((status.get("allocatable") or {}).items())),
        tuple(sorted((status.get("capacity") or {}).items())),
        repr(spec.get("taints")),
    )


class KubeBackend:
    def __init__(
        self,
        api_client: client.ApiClient,
        settings: KubeConfig,
        make_planner: Callable[[Cluster], Planner],
        *,
        reporting: bool = True,
    ) -> None:
        api_client = with_transport_retries(api_client)
        self.api_client = api_client
        self.settings = settings
        self.make_planner = make_planner
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.policy = client.PolicyV1Api(api_client)
        self._budgets = DisruptionBudgets()
        """PodDisruptionBudgets, watched; every planner built reads them."""
        self._binder = KubeBinder(api_client, settings.bind_timeout_s)
        self._actions = KubePodActions(api_client)
        """Nominations and evictions, posted off the request path."""
        self._actions.on_eviction_failed = self._eviction_failed
        self._reflectors: list[Reflector] = []
        self._planner: Planner | None = None
        self._why = "listing Nodes, PodGroups and Pods"
        self._stop = threading.Event()
        self._nodes: dict[str, dict[str, Any]] = {}
        self._prints: dict[str, tuple[Any, ...]] = {}
        self._nodes_lock = threading.Lock()
        self._dirty = threading.Event()
        self.node_errors: list[str] = []
        self._threads: list[threading.Thread] = []
        self._group_lists = {k.source: ServedGroupKind(self.custom, k) for k in GROUP_KINDS}
        """One list function per PodGroup kind, at the version the apiserver serves."""
        self.reporting = reporting and settings.status_and_events
        """Write PodGroup status and Events (a standby does not: the leader does)."""
        self._status_sink = KubeStatusSink(api_client, self._served_version)
        self._reporter = GangReporter(self._status_sink)

    # ------------------------------------------------------------------ Backend protocol
    @property
    def planner(self) -> Planner | None:
        return self._planner

    @property
    def binder(self) -> Binder:
        return self._binder

    def ready(self) -> tuple[bool, str]:
        return (self._planner is not None, "synced" if self._planner else self._why)

    def debug_extra(self) -> dict[str, Any]:
        return {
            "mode": "kubernetes",
            "malformed_nodes": list(self.node_errors),
            "group_versions": {s: g.group_version for s, g in self._group_lists.items()},
            "disruption_budgets": len(self._budgets),
            "api": {
                "watches": {r.resource: r.stats.as_dict() for r in self._reflectors},
                "binds": self._binder.stats.as_dict(),
                "pod_actions": self._actions.stats.as_dict(),
                "status_and_events": self._status_sink.stats.as_dict(),
            },
        }

    def consistency(self) -> dict[str, Any]:
        """The ledger checked against itself and against a fresh list of every pod (the
        cluster's truth): what ``/debug/consistency`` serves. It calls the apiserver, so the
        app runs it off the event loop."""
        planner = self._planner
        if planner is None:
            return {"ok": False, "ready": False, "ledger": [], "cluster": []}
        pods, rv = list_objects(self.core.list_pod_for_all_namespaces, self._timeout)
        ledger = ledger_problems(planner)
        cluster = truth_problems(planner, pods)
        return {
            "ok": not ledger and not cluster,
            "ready": True,
            "resource_version": rv,
            "pods_listed": len(pods),
            "pods_known": len(planner.pods),
            "ledger": ledger,
            "cluster": cluster,
        }

    @property
    def _timeout(self) -> float:
        return self.settings.request_timeout_s

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        starter = threading.Thread(target=self._start, name="extender-sync", daemon=True)
        starter.start()
        self._threads.append(starter)

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        self._actions.stop()
        self._reporter.stop()
        self._status_sink.stop()

    def _start(self) -> None:
        while not self._stop.is_set():
            try:
                self._sync()
                return
            except Exception as exc:  # keep trying: the apiserver may not be reachable yet
                self._why = f"initial sync failed: {exc}"
                log.warning("%s", self._why)
                self._stop.wait(STARTUP_RETRY_S)

    def _sync(self) -> None:
        nodes, node_rv = list_objects(self.core.list_node, self._timeout)
        self._replace_nodes(nodes)
        planner, group_rvs, pod_rv = self._recovered_planner()
        self._planner = planner
        self._dirty.clear()
        timeout = self.settings.watch_timeout_s
        self._spawn(
            Reflector(
                "nodes",
                self.core.list_node,
                Handlers(self._replace_nodes, self._upsert_node, self._delete_node),
                self._stop,
                timeout,
                node_rv,
                self._timeout,
            )
        )
        self._spawn(
            Reflector(
                "pods",
                self.core.list_pod_for_all_namespaces,
                Handlers(self._replace_pods, self._observe_pod, self._delete_pod),
                self._stop,
                timeout,
                pod_rv,
                self._timeout,
            )
        )
        for kind in GROUP_KINDS:
            self._spawn(
                Reflector(
                    f"{kind.group}/{kind.plural}",
                    self._group_list(kind),
                    self._group_handlers(kind),
                    self._stop,
                    timeout,
                    group_rvs[kind.source],
                    self._timeout,
                )
            )
        budgets = self._budgets
        self._spawn(
            Reflector(
                "poddisruptionbudgets",
                self.policy.list_pod_disruption_budget_for_all_namespaces,
                Handlers(budgets.replace, budgets.upsert, budgets.delete),
                self._stop,
                timeout,
                None,
                self._timeout,
            )
        )
        self._spawn(threading.Thread(target=self._refresh_topology, name="topology", daemon=True))

    def _recovered_planner(self) -> tuple[Planner, dict[str, str | None], str | None]:
        """A planner for the current nodes with every group and pod listed afresh and the
        plans recovered from the pods (as after a restart); the lists' resource versions."""
        planner = self.make_planner(self._build_cluster())
        planner.actions = self._actions
        planner.budgets = self._budgets
        with self._nodes_lock:
            planner.scheduler_node_count = len(self._nodes)
        group_rvs: dict[str, str | None] = {}
        for kind in GROUP_KINDS:
            try:
                groups, rv = list_objects(self._group_list(kind), self._timeout)
            except client.ApiException as exc:
                if exc.status != HTTP_NOT_FOUND:
                    raise
                groups, rv = [], None
            for obj in groups:
                planner.observe_group(kind, obj)
            group_rvs[kind.source] = rv
        pods, pod_rv = list_objects(self.core.list_pod_for_all_namespaces, self._timeout)
        planner.recover(pods)
        if self.reporting:
            self._reporter.attach(planner)
        return planner, group_rvs, pod_rv

    def _served_version(self, source: str) -> str | None:
        return self._group_lists[source].version

    def rebuild_plans(self) -> None:
        """Replace the planner by one recovered from fresh lists, keeping the watches: what a
        standby does when it becomes leader (the old leader's plans live in the pods it bound,
        its reservations for members not yet bound only in those annotations). The leader
        writes PodGroup status and Events from then on."""
        self.reporting = self.settings.status_and_events
        planner, _, _ = self._recovered_planner()
        self._planner = planner

    def _observe_pod(self, pod: dict[str, Any]) -> None:
        planner = self._planner
        if planner is not None:
            planner.observe_pod(pod)

    def _eviction_failed(self, pod: PodRef, why: str) -> None:
        planner = self._planner
        if planner is not None:
            planner.eviction_failed(pod, why)

    def _spawn(self, thread: threading.Thread) -> None:
        if isinstance(thread, Reflector):
            self._reflectors.append(thread)
        thread.start()
        self._threads.append(thread)

    # ------------------------------------------------------------------ nodes
    def _replace_nodes(self, items: list[dict[str, Any]]) -> None:
        with self._nodes_lock:
            self._nodes = {n["metadata"]["name"]: n for n in items}
            prints = {name: node_fingerprint(n) for name, n in self._nodes.items()}
            if prints != self._prints:
                self._prints = prints
                self._dirty.set()

    def _upsert_node(self, node: dict[str, Any]) -> None:
        name = node["metadata"]["name"]
        fingerprint = node_fingerprint(node)
        with self._nodes_lock:
            self._nodes[name] = node
            if self._prints.get(name) != fingerprint:
                self._prints[name] = fingerprint
                self._dirty.set()

    def _delete_node(self, node: dict[str, Any]) -> None:
        name = node["metadata"]["name"]
        with self._nodes_lock:
            self._nodes.pop(name, None)
            self._prints.pop(name, None)
        self._dirty.set()

    def _build_cluster(self) -> Cluster:
        with self._nodes_lock:
            nodes = list(self._nodes.values())
        errors: list[MalformedNodeError] = []
        cluster = cluster_from_nodes(
            nodes,
            self.settings.topology_labels,
            errors=errors,
            level_costs=self.settings.level_costs,
        )
        self.node_errors = [str(e) for e in errors]
        return cluster

    def refresh_topology(self) -> None:
        """Fold pending node changes into the planner now."""
        planner = self._planner
        if planner is None:
            return
        self._dirty.clear()
        with self._nodes_lock:
            planner.scheduler_node_count = len(self._nodes)
        try:
            planner.set_cluster(self._build_cluster())
        except ValueError as exc:
            log.warning("topology not refreshed: %s", exc)

    def _refresh_topology(self) -> None:
        while not self._stop.is_set():
            self._dirty.wait()
            if self._stop.is_set():
                return
            self._stop.wait(self.settings.topology_refresh_s)
            self.refresh_topology()

    # ------------------------------------------------------------------ pods and groups
    def _replace_pods(self, items: list[dict[str, Any]]) -> None:
        planner = self._planner
        if planner is None:
            return
        present = {f"{namespace_of(p)}/{p['metadata']['name']}" for p in items}
        with planner.lock:
            for key in [k for k in planner.pods if k not in present]:
                namespace, _, name = key.partition("/")
                planner.forget_pod(namespace, name)
            for pod in items:
                planner.observe_pod(pod)

    def _delete_pod(self, pod: dict[str, Any]) -> None:
        planner = self._planner
        if planner is not None:
            planner.forget_pod(namespace_of(pod), pod["metadata"]["name"], uid_of(pod))

    def _group_list(self, kind: GroupKind) -> Callable[..., Any]:
        return self._group_lists[kind.source]

    def _group_handlers(self, kind: GroupKind) -> Handlers:
        def replace(items: list[dict[str, Any]]) -> None:
            planner = self._planner
            if planner is None:
                return
            with planner.lock:
                for _, namespace, name in [k for k in planner.groups if k[0] == kind.source]:
                    planner.forget_group(kind, namespace, name)
                for obj in items:
                    planner.observe_group(kind, obj)

        def upsert(obj: dict[str, Any]) -> None:
            if self._planner is not None:
                self._planner.observe_group(kind, obj)

        def delete(obj: dict[str, Any]) -> None:
            meta = obj.get("metadata") or {}
            if self._planner is not None:
                self._planner.forget_group(kind, meta.get("namespace") or "default", meta["name"])

        return Handlers(replace, upsert, delete)
