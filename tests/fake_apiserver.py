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

The objects and event log are kept by :mod:`tests.fake_api_store`, the endpoints handled by
:mod:`tests.fake_api_http`; the Node and Pod builders (:mod:`tests.kube_objects`), the fake
kube-scheduler (:mod:`tests.fake_kube_scheduler`) and the extender harness
(:mod:`tests.extender_harness`) are importable from here as well.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tests.extender_harness import post_binds_together, serve_app, wait_until
from tests.fake_api_http import STRATEGIC_MERGE_PATCH, WATCH_POLL_S, _Handler, _QuietServer
from tests.fake_api_store import EVENT_LOG_LIMIT, GROUP_RESOURCES, NODES, PODS, ApiStore
from tests.fake_kube_scheduler import Attempt, FakeKubeScheduler
from tests.kube_objects import GPU_PRODUCT, kube_node, kube_pod, phalanx_gang

__all__ = [
    "EVENT_LOG_LIMIT",
    "GPU_PRODUCT",
    "GROUP_RESOURCES",
    "NODES",
    "PODS",
    "STRATEGIC_MERGE_PATCH",
    "WATCH_POLL_S",
    "ApiStore",
    "Attempt",
    "FakeApiServer",
    "FakeKubeScheduler",
    "kube_node",
    "kube_pod",
    "phalanx_gang",
    "post_binds_together",
    "serve_app",
    "wait_until",
]


class FakeApiServer(ApiStore):
    """The object store (:mod:`tests.fake_api_store`) served over HTTP by
    :mod:`tests.fake_api_http`."""

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
