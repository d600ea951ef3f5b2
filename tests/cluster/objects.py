"""Kubernetes objects for the control-plane scenarios: Nodes from ``phalanx topology export``,
gang pods in every dialect Phalanx reads, their group objects and CRDs, and waits on binds."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException
from phalanx.topology.kube_export import node_list
from phalanx.topology.sources import load_cluster

GPU = "nvidia.com/gpu"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
"""Never pulled: no kubelet runs, the pods only need to be valid."""
NODE_WRITERS = 8
POLL_S = 0.1
HTTP_NOT_FOUND = 404
HTTP_CONFLICT = 409

SCHEDULER_PLUGINS = "scheduler-plugins"
VOLCANO = "volcano"
KUEUE = "kueue"
NATIVE = "native"
PHALANX = "phalanx"
DIALECTS = (PHALANX, SCHEDULER_PLUGINS, VOLCANO, KUEUE, NATIVE)


def _preserve_crd(group: str, kind: str, versions: Iterable[str]) -> dict[str, Any]:
    """A PodGroup CRD as the group's project names it; the schema keeps every field (Phalanx
    reads ``spec``; the projects' own controllers, which validate more, are not installed)."""
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    versions = list(versions)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"podgroups.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "podgroups", "singular": "podgroup", "kind": kind},
            "versions": [
                {
                    "name": v,
                    "served": True,
                    "storage": i == 0,
                    "schema": schema,
                    "subresources": {"status": {}},
                }
                for i, v in enumerate(versions)
            ],
        },
    }


GROUP_CRDS = (
    _preserve_crd("scheduling.x-k8s.io", "PodGroup", ["v1alpha1"]),
    _preserve_crd("scheduling.volcano.sh", "PodGroup", ["v1beta1"]),
)


def install_crds(api: client.ApiClient) -> None:
    ext = client.ApiextensionsV1Api(api)
    for crd in GROUP_CRDS:
        try:
            ext.create_custom_resource_definition(crd)
        except ApiException as exc:
            if exc.status != HTTP_CONFLICT:
                raise
    for crd in GROUP_CRDS:
        name = crd["metadata"]["name"]
        wait_for(
            f"CRD {name} established",
            lambda name=name: any(
                c.type == "Established" and c.status == "True"
                for c in (ext.read_custom_resource_definition(name).status.conditions or [])
            ),
            30,
        )


def wait_for(what: str, check: Callable[[], Any], timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(POLL_S)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what} (last: {last!r})")


# --- nodes ---------------------------------------------------------------------------------
def node_objects(spec: str) -> list[dict[str, Any]]:
    """The Node objects ``phalanx topology export SPEC`` writes."""
    return list(node_list(load_cluster(spec))["items"])


def set_nodes(api: client.ApiClient, nodes: list[dict[str, Any]]) -> None:
    """Makes the cluster's Nodes exactly ``nodes``: every other Node is deleted, these are
    created and their status (capacity, allocatable, Ready) written through the subresource."""
    core = client.CoreV1Api(api)
    wanted = {n["metadata"]["name"] for n in nodes}
    existing = {n.metadata.name for n in core.list_node().items}
    with ThreadPoolExecutor(NODE_WRITERS) as pool:
        list(pool.map(lambda name: core.delete_node(name), existing - wanted))
        list(
            pool.map(
                lambda node: _put_node(core, node, replace=node["metadata"]["name"] in existing),
                nodes,
            )
        )


def _put_node(core: client.CoreV1Api, node: dict[str, Any], *, replace: bool) -> None:
    body = {k: v for k, v in node.items() if k != "status"}
    name = node["metadata"]["name"]
    if replace:
        core.delete_node(name)
    core.create_node(body)
    core.patch_node_status(name, {"status": node["status"]})


def cordon(api: client.ApiClient, node: str) -> None:
    client.CoreV1Api(api).patch_node(node, {"spec": {"unschedulable": True}})


# --- pods and gangs --------------------------------------------------------------------------
@dataclass(frozen=True)
class GangSpec:
    """A gang to create: ``members`` pods of ``gpus`` GPUs each, declared in ``dialect``."""

    name: str
    members: int
    gpus: int
    dialect: str = PHALANX
    priority_class: str | None = None
    min_member: int | None = None
    extra_annotations: tuple[tuple[str, str], ...] = ()

    @property
    def quorum(self) -> int:
        return self.min_member or self.members

    def pod_names(self) -> list[str]:
        return [f"{self.name}-{i}" for i in range(self.members)]


def gang_pod(gang: GangSpec, index: int, namespace: str) -> dict[str, Any]:
    labels: dict[str, str] = {"phalanx-test/gang": gang.name}
    annotations: dict[str, str] = dict(gang.extra_annotations)
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "worker",
                "image": PAUSE_IMAGE,
                "resources": {
                    "requests": {GPU: str(gang.gpus), "cpu": "1", "memory": "1Gi"},
                    "limits": {GPU: str(gang.gpus)},
                },
            }
        ],
        "terminationGracePeriodSeconds": 0,
    }
    if gang.priority_class:
        spec["priorityClassName"] = gang.priority_class
    if gang.dialect == PHALANX:
        annotations["phalanx.io/gang"] = gang.name
        annotations["phalanx.io/gang-size"] = str(gang.quorum)
    elif gang.dialect == SCHEDULER_PLUGINS:
        labels["scheduling.x-k8s.io/pod-group"] = gang.name
    elif gang.dialect == VOLCANO:
        annotations["scheduling.k8s.io/group-name"] = gang.name
    elif gang.dialect == KUEUE:
        labels["kueue.x-k8s.io/pod-group-name"] = gang.name
        annotations["kueue.x-k8s.io/pod-group-total-count"] = str(gang.quorum)
    elif gang.dialect == NATIVE:
        spec["schedulingGroup"] = {"podGroupName": gang.name}
    else:
        raise ValueError(f"unknown gang dialect {gang.dialect!r}")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{gang.name}-{index}",
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": spec,
    }


def group_object(gang: GangSpec, namespace: str) -> tuple[str, str, dict[str, Any]] | None:
    """(group, version, object) of the gang's group, or None for dialects without one."""
    meta = {"name": gang.name, "namespace": namespace}
    if gang.dialect == SCHEDULER_PLUGINS:
        body = {"minMember": gang.quorum, "scheduleTimeoutSeconds": 300}
        return "scheduling.x-k8s.io", "v1alpha1", _group("scheduling.x-k8s.io/v1alpha1", meta, body)
    if gang.dialect == VOLCANO:
        body = {"minMember": gang.quorum}
        return (
            "scheduling.volcano.sh",
            "v1beta1",
            _group("scheduling.volcano.sh/v1beta1", meta, body),
        )
    if gang.dialect == NATIVE:
        body = {"schedulingPolicy": {"gang": {"minCount": gang.quorum}}}
        return "scheduling.k8s.io", "v1beta1", _group("scheduling.k8s.io/v1beta1", meta, body)
    return None


def _group(api_version: str, meta: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": "PodGroup", "metadata": meta, "spec": spec}


def create_gang(
    api: client.ApiClient,
    gang: GangSpec,
    namespace: str,
    *,
    rng: random.Random | None = None,
    group_first: bool = True,
) -> list[str]:
    """Creates the gang's group (if its dialect has one) and its pods, the pods in a random
    order when ``rng`` is given. Returns the pod names in creation order."""
    group = group_object(gang, namespace)
    if group is not None and group_first:
        create_group(api, group, namespace)
    order = list(range(gang.members))
    if rng is not None:
        rng.shuffle(order)
    core = client.CoreV1Api(api)
    for i in order:
        core.create_namespaced_pod(namespace, gang_pod(gang, i, namespace))
    if group is not None and not group_first:
        create_group(api, group, namespace)
    return [f"{gang.name}-{i}" for i in order]


def create_group(
    api: client.ApiClient, group: tuple[str, str, dict[str, Any]], namespace: str
) -> None:
    api_group, version, body = group
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        api_group, version, namespace, "podgroups", body
    )


def plain_pod(name: str, namespace: str, *, gpus: int = 0) -> dict[str, Any]:
    requests: dict[str, str] = {"cpu": "100m", "memory": "64Mi"}
    limits: dict[str, str] = {}
    if gpus:
        requests[GPU] = limits[GPU] = str(gpus)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": PAUSE_IMAGE,
                    "resources": {"requests": requests, "limits": limits},
                }
            ],
            "terminationGracePeriodSeconds": 0,
        },
    }


def pods_of(api: client.ApiClient, namespace: str, gang: str | None = None) -> list[Any]:
    selector = f"phalanx-test/gang={gang}" if gang else None
    return client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector).items


def bound(pods: Iterable[Any]) -> dict[str, str]:
    """pod name -> node for the pods that have one."""
    return {p.metadata.name: p.spec.node_name for p in pods if p.spec.node_name}


def wait_gang_bound(
    api: client.ApiClient, namespace: str, gang: GangSpec, timeout_s: float
) -> dict[str, str]:
    return wait_for(
        f"gang {gang.name} bound whole ({gang.members} pods)",
        lambda: (b := bound(pods_of(api, namespace, gang.name))) and len(b) == gang.members and b,
        timeout_s,
    )


def delete_pods(api: client.ApiClient, namespace: str, gang: str | None = None) -> None:
    """Deletes with no grace period: without a kubelet a graceful delete never completes."""
    core = client.CoreV1Api(api)
    selector = f"phalanx-test/gang={gang}" if gang else None
    core.delete_collection_namespaced_pod(
        namespace, label_selector=selector, grace_period_seconds=0
    )
    wait_for(
        f"pods of {gang or namespace} gone",
        lambda: not core.list_namespaced_pod(namespace, label_selector=selector).items,
        30,
    )


def ensure_namespace(api: client.ApiClient, namespace: str) -> None:
    try:
        client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
    except ApiException as exc:
        if exc.status != HTTP_CONFLICT:
            raise


def ensure_priority_class(api: client.ApiClient, name: str, value: int) -> None:
    try:
        client.SchedulingV1Api(api).create_priority_class(
            {"metadata": {"name": name}, "value": value, "preemptionPolicy": "PreemptLowerPriority"}
        )
    except ApiException as exc:
        if exc.status != HTTP_CONFLICT:
            raise
