"""Posting Bindings through the ``kubernetes`` client.

``create_namespaced_pod_binding`` returns a ``metav1.Status``, which the client cannot
deserialize as a Binding (kubernetes-client/python#547), so the call is made with
``_preload_content=False``. A 409 means the pod is already bound (or its UID changed): the pod
is read back, and a pod already on the requested node counts as success (idempotent binds).
"""

from __future__ import annotations

from typing import Any

import orjson
from kubernetes import client
from kubernetes.client.rest import ApiException
from phalanx.extender.binding import BindOutcome, BindRequest

HTTP_CONFLICT = 409


class KubeBinder:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api_client)

    def bind(self, request: BindRequest) -> BindOutcome:
        body = client.V1Binding(
            metadata=client.V1ObjectMeta(
                name=request.name,
                namespace=request.namespace,
                uid=request.uid or None,
                annotations=request.annotations,
            ),
            target=client.V1ObjectReference(api_version="v1", kind="Node", name=request.node),
        )
        where = f"binding {request.namespace}/{request.name} to {request.node}"
        try:
            self.core.create_namespaced_pod_binding(
                request.name, request.namespace, body, _preload_content=False
            )
        except ApiException as exc:
            message = f"{where}: {exc.status} {_status_message(exc)}"
            if exc.status != HTTP_CONFLICT:
                return BindOutcome(False, message)
            node = self._current_node(request)
            if node == request.node:
                return BindOutcome(True, bound_node=node)
            return BindOutcome(False, message, node)
        except OSError as exc:
            return BindOutcome(False, f"{where}: {exc}")
        return BindOutcome(True, bound_node=request.node)

    def _current_node(self, request: BindRequest) -> str:
        try:
            resp = self.core.read_namespaced_pod(
                request.name, request.namespace, _preload_content=False
            )
            pod = orjson.loads(resp.data)
        except (ApiException, OSError, orjson.JSONDecodeError):
            return ""
        if request.uid and (pod.get("metadata") or {}).get("uid") != request.uid:
            return ""
        return (pod.get("spec") or {}).get("nodeName") or ""


def _status_message(exc: ApiException) -> str:
    try:
        doc: Any = orjson.loads(exc.body or b"")
    except orjson.JSONDecodeError:
        return str(exc.reason)
    return str(doc.get("message") or exc.reason) if isinstance(doc, dict) else str(exc.reason)
