"""What one pod asks for, read from its spec: the :class:`~scheduler.gang.MemberRequest` of a
gang member, plus the pod facts the planner tracks (phase, node, priority, age)."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from kubernetes.utils import parse_quantity
from phalanx.scheduler.gang import MemberRequest

GPU_RESOURCE = "nvidia.com/gpu"
"""The extended resource kube-scheduler routes to the extender (``managedResources``)."""
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
"""GPU Feature Discovery label; a nodeSelector or required affinity on it picks GPU models."""
MILLI = 1000
MIB = 1024 * 1024
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
MAX_QUANTITY = Decimal(2**63 - 1)
"""Kubernetes keeps a quantity's value in an int64; nothing larger can come from a real pod."""
MAX_REQUEST = 2**48
"""Largest GPU count, milli-cpu or MiB one pod may ask for: far above any node's capacity (so
no pod that could fit is refused), and small enough that a gang's total of any resource stays
exact in the planner's int64 arrays."""


class PodSpecError(ValueError):
    """A pod whose spec cannot be read (bad quantity, wrong type); names the pod and field."""


def pod_key(pod: Mapping[str, Any]) -> str:
    meta = pod["metadata"]
    return f"{meta.get('namespace') or 'default'}/{meta['name']}"


def namespace_of(pod: Mapping[str, Any]) -> str:
    return pod["metadata"].get("namespace") or "default"


def uid_of(pod: Mapping[str, Any]) -> str:
    return pod["metadata"].get("uid") or ""


def node_of(pod: Mapping[str, Any]) -> str:
    return (pod.get("spec") or {}).get("nodeName") or ""


def labels_of(pod: Mapping[str, Any]) -> Mapping[str, str]:
    return pod["metadata"].get("labels") or {}


def annotations_of(pod: Mapping[str, Any]) -> Mapping[str, str]:
    return pod["metadata"].get("annotations") or {}


def is_terminal(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in TERMINAL_PHASES


def priority_of(pod: Mapping[str, Any]) -> int:
    value = (pod.get("spec") or {}).get("priority")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def created_s(pod: Mapping[str, Any]) -> float:
    """Creation time in Unix seconds (0 when absent), for FIFO order within a queue."""
    return _timestamp(pod["metadata"].get("creationTimestamp"), 0.0)


def started_s(pod: Mapping[str, Any], default: float) -> float:
    """When the pod started running (``status.startTime``), else ``default`` (the time its
    binding was seen): the start of the service that LAS-like policies count."""
    return _timestamp((pod.get("status") or {}).get("startTime"), default)


def _timestamp(stamp: Any, default: float) -> float:
    if not isinstance(stamp, str):
        return default
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default


def manages(pod: Mapping[str, Any]) -> bool:
    """kube-scheduler's ``IsInterested``: a container or init container names the GPU
    resource in its requests or limits."""
    spec = pod.get("spec") or {}
    for key in ("containers", "initContainers"):
        for c in spec.get(key) or ():
            res = (c or {}).get("resources") or {}
            if GPU_RESOURCE in (res.get("requests") or {}) or GPU_RESOURCE in (
                res.get("limits") or {}
            ):
                return True
    return False


def member_request(pod: Mapping[str, Any], taint_keys: Iterable[str] = ()) -> MemberRequest:
    """Effective requests as Kubernetes computes them: the larger of the sum over containers and
    the largest init container; an extended resource with only a limit requests the limit.

    Node selectors, affinity and tolerations are left to kube-scheduler's own filters: the
    planner only uses nodes kube-scheduler offered, so they are enforced through that list.
    The GPU model and tolerations are the exceptions, as they decide which domains can hold
    the gang: ``taint_keys`` are the cluster's taint keys, which a toleration of every taint
    (``operator: Exists`` without a key) stands for."""
    where = f"pod {pod_key(pod)}"
    spec = pod.get("spec") or {}
    totals = _effective(spec, where)
    gpus_decimal = totals.get(GPU_RESOURCE, Decimal(0))
    if gpus_decimal != gpus_decimal.to_integral_value():
        raise PodSpecError(f"{where}: {GPU_RESOURCE} must be a whole number, got {gpus_decimal}")
    request = MemberRequest(
        gpus=int(gpus_decimal),
        cpu_milli=math.ceil(totals.get("cpu", Decimal(0)) * MILLI),
        memory_mib=math.ceil(totals.get("memory", Decimal(0)) / MIB),
        gpu_products=_gpu_products(spec),
        tolerations=tolerated_taints(spec, taint_keys),
    )
    for resource, amount in (
        (GPU_RESOURCE, request.gpus),
        ("cpu (milli)", request.cpu_milli),
        ("memory (MiB)", request.memory_mib),
    ):
        if amount > MAX_REQUEST:
            raise PodSpecError(
                f"{where}: {resource} request {amount} is larger than any node could hold "
                f"(at most {MAX_REQUEST})"
            )
    return request


def _effective(spec: Mapping[str, Any], where: str) -> dict[str, Decimal]:
    total: dict[str, Decimal] = {}
    for i, c in enumerate(spec.get("containers") or ()):
        for name, qty in _container_requests(c, f"{where} containers[{i}]").items():
            total[name] = total.get(name, Decimal(0)) + qty
    for i, c in enumerate(spec.get("initContainers") or ()):
        for name, qty in _container_requests(c, f"{where} initContainers[{i}]").items():
            total[name] = max(total.get(name, Decimal(0)), qty)
    return total


def _container_requests(container: Any, where: str) -> dict[str, Decimal]:
    if not isinstance(container, dict):
        raise PodSpecError(f"{where} must be an object")
    res = container.get("resources") or {}
    if not isinstance(res, dict):
        raise PodSpecError(f"{where}.resources must be an object")
    limits = _quantities(res.get("limits"), f"{where}.resources.limits")
    requests = _quantities(res.get("requests"), f"{where}.resources.requests")
    for name, qty in limits.items():
        requests.setdefault(name, qty)
    return requests


def _quantities(value: Any, where: str) -> dict[str, Decimal]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PodSpecError(f"{where} must be an object")
    out = {}
    for name, text in value.items():
        if isinstance(text, bool):
            raise PodSpecError(f"{where}[{name!r}]: {text!r} is not a quantity")
        try:
            qty = _quantity(text)
        except (ValueError, TypeError, InvalidOperation):
            raise PodSpecError(f"{where}[{name!r}]: {_short(text)} is not a quantity") from None
        # NaN would raise InvalidOperation at the first comparison, infinity and huge values
        # would overflow the int64 arrays the planner keeps requests in.
        if not qty.is_finite():
            raise PodSpecError(f"{where}[{name!r}]: {_short(text)} is not a finite quantity")
        if qty < 0:
            raise PodSpecError(f"{where}[{name!r}]: {_short(text)} is negative")
        if qty > MAX_QUANTITY:
            raise PodSpecError(f"{where}[{name!r}]: {_short(text)} is beyond the int64 range")
        out[name] = qty
    return out


QUANTITIES_KEPT = 1024
"""Distinct quantity texts remembered: a cluster's pods ask for a few hundred at most."""
LONGEST_KEPT_QUANTITY = 64
"""Longer texts are parsed every time: a valid quantity can be padded with zeros up to the
body limit, and remembering such texts would let requests pin that memory."""


def _quantity(text: Any) -> Decimal:
    """``parse_quantity``, remembered by text for short texts (:func:`_remembered_quantity`)."""
    if isinstance(text, str) and len(text) > LONGEST_KEPT_QUANTITY:
        return parse_quantity(text)
    return _remembered_quantity(text)


@functools.lru_cache(maxsize=QUANTITIES_KEPT, typed=True)
def _remembered_quantity(text: str | float) -> Decimal:
    """``parse_quantity``, remembered (a ``Decimal`` is immutable): every filter of every
    member parses the same few texts ("1", "8", "16Gi"), each a regular expression and a
    decimal multiplication. Text that is not hashable (a list or an object) raises
    ``TypeError`` as the parser does for it; failures are not remembered."""
    return parse_quantity(text)


def _short(value: Any, limit: int = 64) -> str:
    """A bounded repr: a hostile pod must not make every node's reason megabytes long."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def tolerated_taints(spec: Mapping[str, Any], taint_keys: Iterable[str]) -> tuple[str, ...]:
    keys: set[str] = set()
    for t in spec.get("tolerations") or ():
        if not isinstance(t, dict):
            continue
        if t.get("key"):
            keys.add(t["key"])
        elif t.get("operator") == "Exists":
            keys.update(taint_keys)
    return tuple(sorted(keys))


def _gpu_products(spec: Mapping[str, Any]) -> tuple[str, ...]:
    selected = (spec.get("nodeSelector") or {}).get(GPU_PRODUCT_LABEL)
    if selected:
        return (selected,)
    affinity = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    products: set[str] = set()
    for term in affinity.get("nodeSelectorTerms") or ():
        for expr in term.get("matchExpressions") or ():
            if expr.get("key") == GPU_PRODUCT_LABEL and expr.get("operator") == "In":
                products.update(expr.get("values") or ())
    return tuple(sorted(products))
