"""The kube-scheduler extender wire format (``k8s.io/kube-scheduler/extender/v1``).

The Go types carry no JSON tags, so kube-scheduler writes PascalCase keys (``Pod``,
``NodeNames``) and decodes replies case-insensitively. We read keys case-insensitively and
always write exact PascalCase, integer scores, and every key of a reply (``null`` where Go has a
nil pointer), as Go's encoder does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np
import orjson
from phalanx.extender.pod_fields import PodFieldError, check_pod_fields, shown

MIN_EXTENDER_PRIORITY = 0
MAX_EXTENDER_PRIORITY = 10
"""``extender/v1`` score range; kube-scheduler multiplies by weight x 10."""
FEW_SCORES = 64
"""Up to this many integer scores are clamped in Python, more through numpy."""
INT64_MAX = 2**63 - 1
"""Go's ``int64`` (``NumPDBViolations``): a larger count cannot have come from kube-scheduler."""


class WireError(ValueError):
    """A request that does not follow the extender wire format; the message names the field."""


@dataclass(frozen=True)
class ExtenderArgs:
    """Body of ``filter`` and ``prioritize``: the pod and the candidate nodes."""

    pod: dict[str, Any]
    node_names: Sequence[str]
    """Read-only; a :class:`~extender.node_list.NodeNameList` (names kept as the request's
    bytes) when :mod:`extender.args_decoder` took it from a compact list."""
    node_objects: list[dict[str, Any]] | None
    """The full Node objects when kube-scheduler runs with ``nodeCacheCapable: false``."""


@dataclass(frozen=True)
class BindingArgs:
    pod_name: str
    pod_namespace: str
    pod_uid: str
    node: str


@dataclass(frozen=True)
class PreemptionArgs:
    pod: dict[str, Any]
    victims_by_node: dict[str, list[str]]
    """Node -> UIDs of the pods kube-scheduler would evict there."""
    pdb_violations_by_node: dict[str, int]


def decode(body: bytes) -> dict[str, Any]:
    """Parse a request body into a dict whose top-level keys are lower-cased."""
    if not body:
        raise WireError("request body is empty")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise WireError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise WireError(f"request body must be a JSON object, got {type(doc).__name__}")
    return fold_keys(doc)


def fold_keys(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level keys lower-cased: Go matches keys to fields case-insensitively."""
    return {str(k).lower(): v for k, v in obj.items()}


def _string(doc: Mapping[str, Any], key: str, field: str, required: bool = True) -> str:
    value = doc.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise WireError(f"{field} must be a non-empty string, got {shown(value)}")
    return value


def parse_pod(value: Any, field: str = "Pod") -> dict[str, Any]:
    """Check the Pod fields the extender reads (:mod:`extender.pod_fields`): every later
    reader can then rely on their types."""
    if not isinstance(value, dict):
        raise WireError(f"{field} must be a Pod object, got {_kind(value)}")
    meta = value.get("metadata")
    if not isinstance(meta, dict):
        raise WireError(f"{field}.metadata must be an object, got {_kind(meta)}")
    try:
        check_pod_fields(value, field)
    except PodFieldError as exc:
        raise WireError(str(exc)) from None
    return value


def parse_extender_args(doc: Mapping[str, Any]) -> ExtenderArgs:
    pod = parse_pod(doc.get("pod"))
    names = doc.get("nodenames")
    nodes = doc.get("nodes")
    if names is not None:
        if not isinstance(names, list) or not all(map(isinstance, names, repeat(str))):
            raise WireError("NodeNames must be a list of strings")
        return ExtenderArgs(pod, names, None)
    if nodes is None:
        raise WireError("request carries neither NodeNames nor Nodes")
    if not isinstance(nodes, dict) or not isinstance(nodes.get("items"), list):
        raise WireError("Nodes must be a NodeList object with an 'items' list")
    items = nodes["items"]
    names = []
    for i, node in enumerate(items):
        meta = node.get("metadata") if isinstance(node, dict) else None
        name = meta.get("name") if isinstance(meta, dict) else None
        if not isinstance(name, str) or not name:
            raise WireError(f"Nodes.items[{i}].metadata.name must be a non-empty string")
        names.append(name)
    _check_sendable(items)
    return ExtenderArgs(pod, names, items)


def _check_sendable(items: list[Any]) -> None:
    """The passing Node objects go back in the reply at the depth they have here, and orjson
    writes no JSON nested deeper than 255 levels (it reads any depth): a Node that could not be
    sent back is refused before it is planned for, not after."""
    try:
        orjson.dumps({"Nodes": {"items": items}})
    except orjson.JSONEncodeError:
        for i, node in enumerate(items):
            try:
                orjson.dumps({"Nodes": {"items": [node]}})
            except orjson.JSONEncodeError as exc:
                raise WireError(f"Nodes.items[{i}] cannot be written back: {exc}") from None
        raise


def parse_binding_args(doc: Mapping[str, Any]) -> BindingArgs:
    return BindingArgs(
        pod_name=_string(doc, "podname", "PodName"),
        pod_namespace=_string(doc, "podnamespace", "PodNamespace"),
        pod_uid=_string(doc, "poduid", "PodUID", required=False),
        node=_string(doc, "node", "Node"),
    )


def parse_preemption_args(doc: Mapping[str, Any]) -> PreemptionArgs:
    pod = parse_pod(doc.get("pod"))
    victims: dict[str, list[str]] = {}
    pdb: dict[str, int] = {}
    meta_map = doc.get("nodenametometavictims")
    full_map = doc.get("nodenametovictims")
    source, field = (meta_map, "NodeNameToMetaVictims")
    if meta_map is None:
        source, field = (full_map, "NodeNameToVictims")
    if source is None:
        return PreemptionArgs(pod, victims, pdb)
    if not isinstance(source, dict):
        raise WireError(f"{field} must be an object mapping node names to victims")
    for node, entry in source.items():
        where = f"{field}[{shown(node)}]"
        if not isinstance(entry, dict):
            raise WireError(f"{where} must be an object")
        entry = fold_keys(entry)
        pods = entry.get("pods") or []
        if not isinstance(pods, list):
            raise WireError(f"{where}.Pods must be a list")
        uids = []
        for i, p in enumerate(pods):
            uid = _victim_uid(p, field == "NodeNameToMetaVictims")
            if not uid:
                raise WireError(f"{where}.Pods[{i}] has no UID")
            uids.append(uid)
        count = entry.get("numpdbviolations") or 0
        if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= INT64_MAX:
            raise WireError(
                f"{where}.NumPDBViolations must be an integer in 0..{INT64_MAX}, got {shown(count)}"
            )
        victims[node] = uids
        pdb[node] = count
    return PreemptionArgs(pod, victims, pdb)


def _victim_uid(entry: Any, meta: bool) -> str:
    if not isinstance(entry, dict):
        return ""
    if not meta:
        entry = entry.get("metadata")
        if not isinstance(entry, dict):
            return ""
    uid = fold_keys(entry).get("uid") if meta else entry.get("uid")
    return uid if isinstance(uid, str) else ""


# -- replies --------------------------------------------------------------------------------


def filter_reply(
    passing: Sequence[str],
    failed: Mapping[str, str] | None = None,
    unresolvable: Mapping[str, str] | None = None,
    error: str = "",
    node_objects: Iterable[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """``ExtenderFilterResult``: in ``Nodes`` mode the passing nodes go back as Node objects."""
    if node_objects is not None:
        wanted = set(passing)
        items = [n for n in node_objects if n["metadata"]["name"] in wanted]
        nodes: dict[str, Any] | None = {"metadata": {}, "items": items}
        names: list[str] | None = None
    else:
        nodes, names = None, list(passing)
    return {
        "Nodes": nodes,
        "NodeNames": names,
        "FailedNodes": dict(failed or {}),
        "FailedAndUnresolvableNodes": dict(unresolvable) if unresolvable else None,
        "Error": error,
    }


def prioritize_reply(hosts: Sequence[str], scores: Sequence[float]) -> list[dict[str, Any]]:
    """``HostPriorityList``: JSON integers clamped to the extender range (Go cannot decode
    ``7.0`` into an int64)."""
    if isinstance(scores, np.ndarray) and scores.dtype == np.int64 and scores.size < FEW_SCORES:
        # the planner's scores, usually one (numpy's clip costs more than the rest)
        low, high = MIN_EXTENDER_PRIORITY, MAX_EXTENDER_PRIORITY
        clamped = [min(max(s, low), high) for s in scores.tolist()]
    else:
        clamped = (
            np.clip(
                np.asarray(scores, dtype=np.float64), MIN_EXTENDER_PRIORITY, MAX_EXTENDER_PRIORITY
            )
            .astype(np.int64)
            .tolist()
        )
    return [{"Host": h, "Score": s} for h, s in zip(hosts, clamped, strict=True)]


def binding_reply(error: str = "") -> dict[str, str]:
    return {"Error": error}


def preemption_reply(victims_by_node: Mapping[str, Sequence[str]], pdb: Mapping[str, int]) -> dict:
    """``ExtenderPreemptionResult``: always the Meta form, whatever ``nodeCacheCapable`` is."""
    return {
        "NodeNameToMetaVictims": {
            node: {
                "Pods": [{"UID": uid} for uid in uids],
                "NumPDBViolations": int(pdb.get(node, 0)),
            }
            for node, uids in victims_by_node.items()
        }
    }


def encode(reply: Any) -> bytes:
    return orjson.dumps(reply)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
