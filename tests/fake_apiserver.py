"""A small in-process Kubernetes apiserver for exactly what the extender uses.

Served on 127.0.0.1 by a threaded HTTP/1.1 server, so the real ``kubernetes`` client talks to
it over HTTP:

- list and watch (chunked JSON event stream, ``resourceVersion``, ``timeoutSeconds``,
  ``410 Gone`` for a version older than the event log) of Nodes, Pods and the PodGroup
  resources of scheduler-plugins, Volcano and the native API (``v1beta1`` and ``v1alpha2``);
- API discovery of those groups (``GET /apis/GROUP/VERSION``: the resources served there, 404
  when none);
- ``GET`` of one pod;
- ``POST pods/{name}/binding`` with the apiserver's semantics (``BindingREST.Create``): the
  URL name must match ``metadata.name`` (400), the target must be a Node (422), the pod must
  exist (404), ``metadata.uid`` is a precondition (409), a pod being deleted or already assigned
  is a conflict (409), and on success ``spec.nodeName`` is set, the Binding's annotations are
  merged into the pod, ``PodScheduled`` becomes True, and a ``Status`` comes back (201);
- ``PATCH pods/{name}/status`` (merge patch of ``status``: the extender's nominations);
- ``POST pods/{name}/eviction``: the pod is deleted at once (no PodDisruptionBudgets here),
  404 when it does not exist; every eviction is kept in :attr:`FakeApiServer.evictions`;
- ``PATCH podgroups/{name}/status`` of every PodGroup kind (a merge patch; with the strategic
  merge content type ``conditions`` merge by ``type``, as for the built-in native PodGroup),
  watched as a ``MODIFIED`` group; every patch is kept in :attr:`FakeApiServer.status_patches`;
- ``POST`` and ``PATCH`` (merge) of ``events.k8s.io/v1`` Events, kept in
  :attr:`FakeApiServer.k8s_events` by namespace and name.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

EVENT_LOG_LIMIT = 10_000
"""Older events are compacted away: a watch from before them gets 410 Gone."""
WATCH_POLL_S = 0.05

NODES = "nodes"
PODS = "pods"
GROUP_RESOURCES = {
    "/apis/scheduling.x-k8s.io/v1alpha1/podgroups": "podgroups.scheduling.x-k8s.io",
    "/apis/scheduling.volcano.sh/v1beta1/podgroups": "podgroups.scheduling.volcano.sh",
    "/apis/scheduling.k8s.io/v1beta1/podgroups": "podgroups.scheduling.k8s.io/v1beta1",
    "/apis/scheduling.k8s.io/v1alpha2/podgroups": "podgroups.scheduling.k8s.io/v1alpha2",
}
_DISCOVERY = re.compile(r"^/apis/([^/]+)/([^/]+)$")
_BINDING = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/binding$")
_POD = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)$")
_POD_STATUS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/status$")
_EVICTION = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/eviction$")
_GROUP_STATUS = re.compile(r"^/apis/([^/]+)/([^/]+)/namespaces/([^/]+)/podgroups/([^/]+)/status$")
_EVENTS = re.compile(r"^/apis/events\.k8s\.io/v1/namespaces/([^/]+)/events(?:/([^/]+))?$")
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"


@dataclass
class _Event:
    rv: int
    resource: str
    kind: str
    obj: dict[str, Any]


@dataclass
class FakeApiServer:
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

    # ------------------------------------------------------------------ object store
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

    # ------------------------------------------------------------------ serving
    @contextmanager
    def serve(self) -> Iterator[str]:
        """Run on a free loopback port; yields the base URL."""
        api = self

        class Handler(_Handler):
            server_api = api

        httpd = _QuietServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{httpd.server_address[1]}"
        finally:
            with self.cond:
                self.rv += 1
                self.cond.notify_all()
            httpd.shutdown()
            httpd.server_close()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients dropping a watch mid-stream is normal; do not print tracebacks for it."""


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if code < 300 else "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_api: FakeApiServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send_json(self, code: int, doc: Any) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _resource(self, path: str) -> str | None:
        if path == "/api/v1/nodes":
            return NODES
        if path == "/api/v1/pods":
            return PODS
        resource = GROUP_RESOURCES.get(path)
        if resource is not None and resource in self.server_api.served_groups:
            return resource
        return None

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        api = self.server_api
        match = _POD.match(url.path)
        if match:
            pod = api.get(PODS, match.group(2), match.group(1))
            if pod is None:
                self._send_json(404, _status(404, "NotFound", f'pods "{match.group(2)}" not found'))
            else:
                self._send_json(200, pod)
            return
        if _DISCOVERY.match(url.path):
            self._discovery(url.path)
            return
        resource = self._resource(url.path)
        if resource is None:
            self._send_json(404, _status(404, "NotFound", f"the server could not find {url.path}"))
            return
        if query.get("watch") in ("true", "1"):
            self._watch(resource, query)
            return
        with api.cond:
            items = [copy.deepcopy(o) for o in api.objects.get(resource, {}).values()]
            rv = api.rv
        doc = {"kind": "List", "metadata": {"resourceVersion": str(rv)}, "items": items}
        self._send_json(200, doc)

    def _discovery(self, group_version_path: str) -> None:
        """The APIResourceList of one group version: its served PodGroup resource, or 404."""
        served = [
            path.rsplit("/", 1)[1]
            for path, resource in GROUP_RESOURCES.items()
            if path.rsplit("/", 1)[0] == group_version_path
            and resource in self.server_api.served_groups
        ]
        if not served:
            message = f"the server could not find {group_version_path}"
            self._send_json(404, _status(404, "NotFound", message))
            return
        doc = {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version_path.removeprefix("/apis/"),
            "resources": [
                {"name": name, "namespaced": True, "kind": "PodGroup", "verbs": ["list", "watch"]}
                for name in served
            ],
        }
        self._send_json(200, doc)

    def _watch(self, resource: str, query: dict[str, str]) -> None:
        api = self.server_api
        since = int(query.get("resourceVersion") or 0)
        deadline = time.monotonic() + float(query.get("timeoutSeconds") or 30)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            if since and since < api.compacted_rv:
                self._chunk({"type": "ERROR", "object": _status(410, "Expired", "too old")})
                return
            while time.monotonic() < deadline:
                with api.cond:
                    fresh = [e for e in api.events if e.rv > since and e.resource == resource]
                    if not fresh:
                        api.cond.wait(WATCH_POLL_S)
                        continue
                for event in fresh:
                    self._chunk({"type": event.kind, "object": event.obj})
                    since = event.rv
        except (BrokenPipeError, ConnectionResetError):
            return
        finally:
            try:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, ValueError):
                pass
        self.close_connection = True

    def _chunk(self, doc: dict[str, Any]) -> None:
        data = json.dumps(doc).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def do_PATCH(self) -> None:
        url = urlparse(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if _GROUP_STATUS.match(url.path):
            self._patch_group_status(url.path, json.loads(body or b"{}"))
            return
        if _EVENTS.match(url.path):
            self._event(url.path, json.loads(body or b"{}"), create=False)
            return
        match = _POD_STATUS.match(url.path)
        api = self.server_api
        pod = api.get(PODS, match.group(2), match.group(1)) if match else None
        if pod is None:
            self._send_json(404, _status(404, "NotFound", f"the server could not find {url.path}"))
            return
        patch = json.loads(body or b"{}").get("status") or {}
        status = pod.setdefault("status", {})
        for key, value in patch.items():
            if value is None:
                status.pop(key, None)
            else:
                status[key] = value
        api.update_pod(pod)
        self._send_json(200, pod)

    def do_POST(self) -> None:
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if _EVENTS.match(url.path):
            self._event(url.path, json.loads(body or b"{}"), create=True)
            return
        eviction = _EVICTION.match(url.path)
        if eviction:
            namespace, name = eviction.groups()
            api = self.server_api
            if api.get(PODS, name, namespace) is None:
                self._send_json(404, _status(404, "NotFound", f'pods "{name}" not found'))
                return
            with api.cond:
                api.evictions.append(f"{namespace}/{name}")
            api.delete_pod(namespace, name)
            self._send_json(201, _status(201, "", ""))
            return
        match = _BINDING.match(url.path)
        if not match:
            self._send_json(404, _status(404, "NotFound", f"the server could not find {url.path}"))
            return
        namespace, name = match.groups()
        code, doc = self._bind(namespace, name, body)
        self._send_json(code, doc)

    def _patch_group_status(self, path: str, patch: dict[str, Any]) -> None:
        match = _GROUP_STATUS.match(path)
        assert match is not None
        group, version, namespace, name = match.groups()
        api = self.server_api
        resource = GROUP_RESOURCES.get(f"/apis/{group}/{version}/podgroups")
        obj = api.get(resource, name, namespace) if resource else None
        if resource is None or obj is None:
            self._send_json(404, _status(404, "NotFound", f'podgroups "{name}" not found'))
            return
        status = obj.setdefault("status", {})
        strategic = self.headers.get("Content-Type", "").startswith(STRATEGIC_MERGE_PATCH)
        for key, value in (patch.get("status") or {}).items():
            if key == "conditions" and strategic:
                merged = {c["type"]: c for c in status.get("conditions") or []}
                merged.update({c["type"]: c for c in value})
                status[key] = list(merged.values())
            elif value is None:
                status.pop(key, None)
            else:
                status[key] = value
        with api.cond:
            api.status_patches.append((resource, f"{namespace}/{name}", patch))
        api._put(resource, obj, "MODIFIED")
        self._send_json(200, obj)

    def _event(self, path: str, body: dict[str, Any], *, create: bool) -> None:
        match = _EVENTS.match(path)
        assert match is not None
        namespace, name = match.groups()
        api = self.server_api
        with api.cond:
            if create:
                key = (namespace, body["metadata"]["name"])
                if key in api.k8s_events:
                    self._send_json(409, _status(409, "AlreadyExists", "event exists"))
                    return
                api.k8s_events[key] = body
            else:
                key = (namespace, name or "")
                if key not in api.k8s_events:
                    self._send_json(404, _status(404, "NotFound", f'events "{name}" not found'))
                    return
                api.k8s_events[key] = {**api.k8s_events[key], **body}
            doc = copy.deepcopy(api.k8s_events[key])
        self._send_json(201 if create else 200, doc)

    def _bind(self, namespace: str, name: str, body: bytes) -> tuple[int, dict[str, Any]]:
        api = self.server_api
        try:
            binding = json.loads(body)
        except json.JSONDecodeError:
            return 400, _status(400, "BadRequest", "the body is not a Binding")
        with api.cond:
            api.bindings.append(copy.deepcopy(binding))
            if api.fail_bindings > 0:
                api.fail_bindings -= 1
                return 500, _status(500, "InternalError", "injected failure")
        meta = binding.get("metadata") or {}
        target = binding.get("target") or {}
        if meta.get("name") != name:
            message = "name in URL does not match name in Binding object"
            return 400, _status(400, "BadRequest", message)
        if target.get("kind") not in (None, "", "Node") or not target.get("name"):
            return 422, _status(422, "Invalid", "Binding.target: must be a Node with a name")
        with api.cond:
            pod = api.objects.get(PODS, {}).get((namespace, name))
            if pod is None:
                return 404, _status(404, "NotFound", f'pods "{name}" not found')
            uid = meta.get("uid")
            if uid and uid != pod["metadata"].get("uid"):
                return 409, _status(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on pods/binding "{name}": Precondition '
                    f"failed: UID in precondition: {uid}, UID in object meta: "
                    f"{pod['metadata'].get('uid')}",
                )
            if pod["metadata"].get("deletionTimestamp"):
                return 409, _status(
                    409, "Conflict", f"pod {name} is being deleted, cannot be assigned to a host"
                )
            current = (pod.get("spec") or {}).get("nodeName")
            if current:
                return 409, _status(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} is '
                    f'already assigned to node "{current}"',
                )
            updated = copy.deepcopy(pod)
            updated.setdefault("spec", {})["nodeName"] = target["name"]
            annotations = updated["metadata"].setdefault("annotations", {})
            annotations.update(meta.get("annotations") or {})
            conditions = updated.setdefault("status", {}).setdefault("conditions", [])
            conditions[:] = [c for c in conditions if c.get("type") != "PodScheduled"]
            conditions.append({"type": "PodScheduled", "status": "True"})
        api.update_pod(updated)
        return 201, _status(201, "", "")


# ============================================================================ cluster objects
GPU_PRODUCT = "NVIDIA-H100-80GB-HBM3"


def kube_node(name: str, su: str, gpus: int = 8, ready: bool = True) -> dict[str, Any]:
    """A DGX H100 Node as GPU Feature Discovery and the Phalanx topology labels describe it."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "nvidia.com/gpu.product": GPU_PRODUCT,
                "nvidia.com/gpu.count": str(gpus),
                "nvidia.com/gpu.memory": "81559",
                "phalanx.io/su": su,
                "phalanx.io/spine": "spine0",
            },
        },
        "spec": {},
        "status": {
            "capacity": {"cpu": "224", "memory": "2048Gi", "nvidia.com/gpu": str(gpus)},
            "allocatable": {"cpu": "224", "memory": "2048Gi", "nvidia.com/gpu": str(gpus)},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def kube_pod(
    name: str,
    namespace: str = "ml",
    gpus: int = 8,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    uid: str | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid or f"uid-{namespace}-{name}",
            "labels": dict(labels or {}),
            "annotations": dict(annotations or {}),
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {
            "schedulerName": "default-scheduler",
            "containers": [
                {
                    "name": "worker",
                    "image": "trainer:1",
                    "resources": {
                        "requests": {"nvidia.com/gpu": str(gpus), "cpu": "8", "memory": "64Gi"},
                        "limits": {"nvidia.com/gpu": str(gpus)},
                    },
                }
            ],
        },
        "status": {"phase": "Pending"},
    }


def phalanx_gang(name: str, size: int) -> dict[str, str]:
    return {"phalanx.io/gang": name, "phalanx.io/gang-size": str(size)}


# ============================================================================ kube-scheduler
@dataclass
class Attempt:
    """One scheduling attempt of one pod, as kube-scheduler would record it."""

    pod: str
    node: str = ""
    reasons: dict[str, str] = field(default_factory=dict)
    error: str = ""
    binding: threading.Thread | None = field(default=None, repr=False, compare=False)
    """The binding cycle, run beside the scheduling loop as kube-scheduler's goroutine is."""

    @property
    def bound(self) -> bool:
        if self.binding is not None:
            self.binding.join()
        return bool(self.node) and not self.error


class FakeKubeScheduler:
    """Plays kube-scheduler's part against an extender: in-tree filters (Ready, cordon, GPU
    fit), then filter -> prioritize (only for >= 2 nodes) -> bind, in the exact JSON the Go
    scheduler sends (PascalCase, ``NodeNames`` mode), holding the extender to the contract:
    status 200 only, returned names a subset of the input, integer scores."""

    def __init__(self, api: FakeApiServer, extender_url: str, weight: int = 10) -> None:
        import httpx

        self.api = api
        self.http = httpx.Client(base_url=extender_url, timeout=30)
        self.weight = weight
        self._assumed: dict[str, str] = {}
        """Pods whose binding cycle runs -> their node (counted as used, as assumed pods are)."""
        self._assumed_lock = threading.Lock()

    def close(self) -> None:
        self.http.close()

    def feasible(self, pod: dict[str, Any]) -> list[str]:
        want = _gpus_of(pod)
        with self.api.cond:
            nodes = [copy.deepcopy(n) for n in self.api.objects.get(NODES, {}).values()]
            pods = [copy.deepcopy(p) for p in self.api.objects.get(PODS, {}).values()]
        used: dict[str, int] = {}
        with self._assumed_lock:
            assumed = dict(self._assumed)
        for p in pods:
            node = (p.get("spec") or {}).get("nodeName")
            key = f"{p['metadata'].get('namespace', 'default')}/{p['metadata']['name']}"
            if not node and key in assumed:
                node = assumed[key]
            if node and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                used[node] = used.get(node, 0) + _gpus_of(p)
        out = []
        for n in sorted(nodes, key=lambda n: n["metadata"]["name"]):
            name = n["metadata"]["name"]
            ready = any(
                c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"]
            )
            free = int(n["status"]["allocatable"]["nvidia.com/gpu"]) - used.get(name, 0)
            if ready and not n["spec"].get("unschedulable") and free >= want:
                out.append(name)
        return out

    def post(self, verb: str, doc: Any) -> Any:
        resp = self.http.post(f"/{verb}", json=doc)
        assert resp.status_code == 200, f"{verb}: status {resp.status_code}: {resp.text}"
        return resp.json()

    def schedule_all(self, namespace: str, names: list[str]) -> dict[str, Attempt]:
        """One scheduling cycle per pod in turn, their binding cycles running meanwhile (so a
        gang's members meet at the extender's bind barrier); returns once all have ended."""
        attempts = {name: self.schedule(namespace, name, wait=False) for name in names}
        for attempt in attempts.values():
            assert attempt.bound in (True, False)
        return attempts

    def schedule(self, namespace: str, name: str, *, wait: bool = True) -> Attempt:
        """One scheduling cycle; its binding cycle runs in a thread, awaited unless ``wait``
        is False (then ``Attempt.bound`` waits for it)."""
        pod = self.api.pod(namespace, name)
        attempt = Attempt(f"{namespace}/{name}")
        names = self.feasible(pod)
        if not names:
            attempt.reasons = {"*": "no node passed the in-tree filters"}
            return attempt
        result = self.post("filter", {"Pod": pod, "Nodes": None, "NodeNames": names})
        assert set(result) == {
            "Nodes",
            "NodeNames",
            "FailedNodes",
            "FailedAndUnresolvableNodes",
            "Error",
        }
        if result["Error"]:
            attempt.error = result["Error"]
            return attempt
        passing = result["NodeNames"] or []
        assert set(passing) <= set(names), "extender claims a node not in the input list"
        attempt.reasons = {**(result["FailedNodes"] or {})}
        attempt.reasons.update(result["FailedAndUnresolvableNodes"] or {})
        if not passing:
            return attempt
        chosen = passing[0]
        if len(passing) >= 2:
            scores = self.post("prioritize", {"Pod": pod, "Nodes": None, "NodeNames": passing})
            assert all(isinstance(s["Score"], int) for s in scores)
            best = max(scores, key=lambda s: s["Score"] * self.weight * 10)
            chosen = best["Host"]
        attempt.node = chosen
        key = f"{namespace}/{name}"
        args = {
            "PodName": name,
            "PodNamespace": namespace,
            "PodUID": pod["metadata"]["uid"],
            "Node": chosen,
        }

        def binding_cycle() -> None:
            try:
                attempt.error = self.post("bind", args)["Error"]
            finally:
                with self._assumed_lock:
                    self._assumed.pop(key, None)

        with self._assumed_lock:
            self._assumed[key] = chosen
        attempt.binding = threading.Thread(target=binding_cycle, daemon=True)
        attempt.binding.start()
        if wait:
            attempt.binding.join()
        return attempt


def _gpus_of(pod: dict[str, Any]) -> int:
    return int(pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])


@contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """Run an ASGI app under uvicorn on a free loopback port; yields its base URL."""
    import socket

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", http="httptools"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "extender server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def wait_until(predicate: Any, timeout_s: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def post_binds_together(http: Any, binds: list[dict[str, Any]], path: str = "/bind") -> list[Any]:
    """Post a gang's ExtenderBindingArgs at once, as kube-scheduler's binding goroutines do
    (the extender's bind barrier holds each until every planned member has arrived); the
    replies in order. ``http`` is an ``httpx.Client`` (safe to share between threads)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, len(binds))) as pool:
        return list(pool.map(lambda b: http.post(path, json=b).json(), binds))
