"""The fake apiserver's HTTP side (:mod:`tests.fake_apiserver`): the request handler for every
endpoint the module docstring there lists, and a threaded server that stays quiet when a
client drops a watch."""

from __future__ import annotations

import copy
import json
import re
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

from tests.fake_api_store import GROUP_RESOURCES, NODES, PODS

if TYPE_CHECKING:
    from tests.fake_apiserver import FakeApiServer

WATCH_POLL_S = 0.05
_DISCOVERY = re.compile(r"^/apis/([^/]+)/([^/]+)$")
_BINDING = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/binding$")
_POD = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)$")
_POD_STATUS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/status$")
_EVICTION = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/eviction$")
_GROUP_STATUS = re.compile(r"^/apis/([^/]+)/([^/]+)/namespaces/([^/]+)/podgroups/([^/]+)/status$")
_EVENTS = re.compile(r"^/apis/events\.k8s\.io/v1/namespaces/([^/]+)/events(?:/([^/]+))?$")
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"


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
