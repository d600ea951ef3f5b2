"""The shape of the Pod fields the extender reads, checked where a request enters.

kube-scheduler forwards the Pod as the apiserver stored it, so a real request always has this
shape. A body that does not (a hand-written ``curl``, a broken proxy, a fuzzer) is refused here
as a wire error naming the field, before the planner or a gang source reads it: those read the
fields without type checks of their own, and a list where an object belongs would otherwise
surface deep inside them as an ``AttributeError`` (an HTTP 500 and a traceback in the log).

Only types and Kubernetes' own name rules are checked here. Values that have the right type but
make no sense for scheduling (a quantity that does not parse, a gang size that is not a number)
are the pod's problem, not the request's: they reach the user as the reason in the pod's events
(:mod:`extender.podspec`, :mod:`extender.hints`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
"""``spec.priority`` is an ``int32`` in the Pod API."""
MAX_NAME_LENGTH = 253
MAX_NAMESPACE_LENGTH = 63
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


class PodFieldError(ValueError):
    """A Pod field of the wrong type or an impossible name; the message names the field."""


def check_pod_fields(pod: Mapping[str, Any], field: str = "Pod") -> None:
    """Raise :class:`PodFieldError` naming the first field the extender reads that a Pod
    stored by the apiserver could not have. ``pod`` already has a ``metadata`` object."""
    meta = pod["metadata"]
    where = f"{field}.metadata"
    check_name(meta.get("name"), f"{where}.name")
    namespace = meta.get("namespace")
    if namespace is not None and namespace != "":
        check_namespace(namespace, f"{where}.namespace")
    _optional(meta, "uid", str, where)
    _optional(meta, "creationTimestamp", str, where)
    _string_map(meta.get("labels"), f"{where}.labels")
    _string_map(meta.get("annotations"), f"{where}.annotations")
    spec = pod.get("spec")
    if spec is not None:
        _check_spec(_object(spec, f"{field}.spec"), f"{field}.spec")
    status = pod.get("status")
    if status is not None:
        _optional(_object(status, f"{field}.status"), "phase", str, f"{field}.status")


def check_name(value: Any, field: str) -> str:
    """A Pod name as the apiserver allows it (a DNS subdomain): it also keys the planner's
    records as ``namespace/name``, so a ``/`` in it could make two pods one."""
    return _dns_name(value, field, _DNS_SUBDOMAIN, MAX_NAME_LENGTH, "object name", "subdomain")


def check_namespace(value: Any, field: str) -> str:
    """A namespace as the apiserver allows it (a DNS label)."""
    return _dns_name(value, field, _DNS_LABEL, MAX_NAMESPACE_LENGTH, "namespace", "label")


def _dns_name(
    value: Any, field: str, pattern: re.Pattern[str], max_length: int, what: str, kind: str
) -> str:
    if not isinstance(value, str) or not value:
        raise PodFieldError(f"{field} must be a non-empty string, got {shown(value)}")
    if len(value) > max_length or not pattern.fullmatch(value):
        raise PodFieldError(
            f"{field} {shown(value)} is not a valid {what} "
            f"(lower-case DNS {kind}, at most {max_length} characters)"
        )
    return value


def _check_spec(spec: Mapping[str, Any], where: str) -> None:
    _optional(spec, "nodeName", str, where)
    priority = spec.get("priority")
    if priority is not None and (not _is_int(priority) or not INT32_MIN <= priority <= INT32_MAX):
        raise PodFieldError(f"{where}.priority must be a 32-bit integer, got {shown(priority)}")
    for key in ("containers", "initContainers"):
        for i, container in enumerate(_list(spec.get(key), f"{where}.{key}")):
            _check_container(container, f"{where}.{key}[{i}]")
    for i, toleration in enumerate(_list(spec.get("tolerations"), f"{where}.tolerations")):
        at = f"{where}.tolerations[{i}]"
        toleration = _object(toleration, at)
        _optional(toleration, "key", str, at)
        _optional(toleration, "operator", str, at)
    _string_map(spec.get("nodeSelector"), f"{where}.nodeSelector")
    _check_affinity(spec.get("affinity"), f"{where}.affinity")
    group = spec.get("schedulingGroup")
    if group is not None:
        at = f"{where}.schedulingGroup"
        _optional(_object(group, at), "podGroupName", str, at)


def _check_container(container: Any, where: str) -> None:
    container = _object(container, where)
    resources = container.get("resources")
    if resources is None:
        return
    resources = _object(resources, f"{where}.resources")
    for kind in ("requests", "limits"):
        quantities = resources.get(kind)
        if quantities is None:
            continue
        at = f"{where}.resources.{kind}"
        for name, value in _object(quantities, at).items():
            if not isinstance(value, str) and not _is_number(value):
                raise PodFieldError(
                    f"{at}[{name!r}] must be a quantity (a string or a number), got {shown(value)}"
                )


def _check_affinity(value: Any, where: str) -> None:
    """Only the path :func:`extender.podspec.member_request` follows to the GPU model."""
    if value is None:
        return
    node = _object(value, where).get("nodeAffinity")
    if node is None:
        return
    where = f"{where}.nodeAffinity"
    required = _object(node, where).get("requiredDuringSchedulingIgnoredDuringExecution")
    if required is None:
        return
    where = f"{where}.requiredDuringSchedulingIgnoredDuringExecution"
    terms = _object(required, where).get("nodeSelectorTerms")
    for i, term in enumerate(_list(terms, f"{where}.nodeSelectorTerms")):
        at = f"{where}.nodeSelectorTerms[{i}]"
        expressions = _object(term, at).get("matchExpressions")
        for j, expr in enumerate(_list(expressions, f"{at}.matchExpressions")):
            exp_at = f"{at}.matchExpressions[{j}]"
            expr = _object(expr, exp_at)
            _optional(expr, "key", str, exp_at)
            _optional(expr, "operator", str, exp_at)
            for k, item in enumerate(_list(expr.get("values"), f"{exp_at}.values")):
                if not isinstance(item, str):
                    raise PodFieldError(f"{exp_at}.values[{k}] must be a string, got {shown(item)}")


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise PodFieldError(f"{where} must be an object, got {_kind(value)}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise PodFieldError(f"{where} must be a list, got {_kind(value)}")
    return value


def _string_map(value: Any, where: str) -> None:
    """Labels, annotations and node selectors are ``map[string]string`` in the API."""
    if value is None:
        return
    for key, item in _object(value, where).items():
        if not isinstance(item, str):
            raise PodFieldError(f"{where}[{key!r}] must be a string, got {shown(item)}")


def _optional(doc: Mapping[str, Any], key: str, kind: type, where: str) -> None:
    value = doc.get(key)
    if value is not None and not isinstance(value, kind):
        name = "string" if kind is str else kind.__name__
        raise PodFieldError(f"{where}.{key} must be a {name}, got {shown(value)}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def shown(value: Any, limit: int = 64) -> str:
    """A value for an error message: its type for containers, a bounded repr otherwise (a
    hostile request must not be able to make the reply or the log arbitrarily large)."""
    if isinstance(value, dict | list):
        return _kind(value)
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
