"""Which version of a PodGroup resource the apiserver serves, found by API discovery.

An API that graduates changes its version: Kubernetes 1.36 served the native PodGroup as
``scheduling.k8s.io/v1alpha2``, 1.37 serves ``v1beta1`` (and no longer ``v1alpha2``). A
hard-coded version lists nothing (404) on the other release, and the gangs that API declares
then wait forever for a group object the extender never sees. So the version is looked up: the
first of :attr:`GroupKind.versions` whose discovery document (``GET /apis/GROUP/VERSION``)
lists the resource. The lookup runs again before every full list (start, a ``410 Gone``, a
broken watch), so a cluster upgraded under a running extender is followed; a watch always
uses the version of the list it continues.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from kubernetes import client
from kubernetes.client.rest import ApiException
from phalanx.extender.gangs.ref import GroupKind
from phalanx.extender.reflector import HTTP_NOT_FOUND

log = logging.getLogger(__name__)


class ServedGroupKind:
    """A list function for one PodGroup kind (``Reflector`` and ``list_objects`` call it) that
    uses the version the apiserver serves."""

    def __init__(self, custom: client.CustomObjectsApi, kind: GroupKind) -> None:
        self.custom = custom
        self.kind = kind
        self.version: str | None = None
        """The version in use; None until discovery found one."""

    def discover(self, request_timeout: Any = None) -> str | None:
        """The first accepted version whose discovery document lists the resource, or None
        when the cluster serves none of them (the CRD, or the feature gate, is absent).
        ``request_timeout`` is the list's own, so a hung discovery request ends with it."""
        for version in self.kind.versions:
            try:
                resp = self.custom.get_api_resources(
                    self.kind.group,
                    version,
                    _preload_content=False,
                    _request_timeout=request_timeout,
                )
            except ApiException as exc:
                if exc.status == HTTP_NOT_FOUND:
                    continue
                raise
            doc = orjson.loads(resp.data)
            names = {r.get("name") for r in doc.get("resources") or () if isinstance(r, dict)}
            if self.kind.plural in names:
                return version
        return None

    def __call__(self, **kwargs: Any) -> Any:
        if not kwargs.get("watch") or self.version is None:
            found = self.discover(kwargs.get("_request_timeout"))
            if found != self.version:
                log.info(
                    "%s: using %s/%s",
                    self.kind.source,
                    self.kind.group,
                    found or "(none served)",
                )
            self.version = found
        if self.version is None:
            versions = ", ".join(self.kind.versions)
            raise ApiException(
                status=HTTP_NOT_FOUND,
                reason=f"{self.kind.plural}.{self.kind.group} is not served in {versions}",
            )
        return self.custom.list_cluster_custom_object(
            self.kind.group, self.version, self.kind.plural, **kwargs
        )

    @property
    def group_version(self) -> str | None:
        """``group/version`` in use, for /debug/state."""
        return f"{self.kind.group}/{self.version}" if self.version else None
