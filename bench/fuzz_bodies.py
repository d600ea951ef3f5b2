"""Hostile requests for the extender webhook: valid kube-scheduler bodies, then mutated.

Every request starts from what kube-scheduler really sends (``ExtenderArgs`` in ``NodeNames``
and ``Nodes`` form, ``ExtenderPreemptionArgs`` in both victim forms, ``ExtenderBindingArgs``)
for pods of every gang source, so that mutations land next to the fields the extender reads.
Then zero or more mutations: a value of the wrong type, a NaN/infinite/huge/negative quantity,
annotations that are not an object, a missing field, deep nesting, a duplicate key in another
case; and at the byte level truncation, bad UTF-8 and stray bytes. GET requests hit the
read-only endpoints with odd paths, methods and query strings.

All choices come from one ``draw(n) -> 0..n-1`` function, so the same generator serves a
seeded ``random.Random`` (the benchmark) and Hypothesis (the test, which reports a failing
case by its draws).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

Draw = Callable[[int], int]
"""``draw(n)``: a choice in ``0..n-1``."""
T = TypeVar("T")

NAMESPACE = "ml"
POD_NAMES = tuple(f"fz-{i}" for i in range(12))
"""A small pool, so that filters, binds and preemptions meet the same pods again."""
GANGS = ("ga", "gb", "gc")
VERBS = ("filter", "prioritize", "preempt", "bind")
GPU = "nvidia.com/gpu"
READ_PATHS = ("/healthz", "/readyz", "/metrics", "/debug/state")
DEEP = 3000
"""Nesting depth of the deepest values: past orjson's write limit (255), below nothing it
reads."""
_DEEP_MARK = "\u0000deep\u0000"

HOSTILE_VALUES: tuple[Any, ...] = (
    None,
    True,
    False,
    0,
    -1,
    7,
    2**63 - 1,
    2**64 - 1,
    10**30,
    -(2**63),
    0.5,
    -0.0,
    1e308,
    float("nan"),
    float("inf"),
    "",
    "NaN",
    "sNaN",
    "nan",
    "Infinity",
    "-Infinity",
    "inf",
    "-1",
    "0.5",
    "1e100000",
    "1e-100000",
    "1e18",
    "9" * 40,
    "9" * 5000,
    "²",
    " 3 ",
    "3#1",
    "a/b",
    "ml/ga",
    "\x00",
    "\u2603",
    "x" * 5000,
    [],
    {},
    [1, "a"],
    {"a": "b"},
    ["x"],
    _DEEP_MARK,
)
HOSTILE_QUANTITIES: tuple[Any, ...] = (
    "NaN",
    "sNaN",
    "Infinity",
    "-inf",
    "1e100000",
    "1e999999Ei",
    "-8",
    "0.5",
    "1e-100000",
    "9" * 30,
    "99999999999999999999Ei",
    "1e18",
    "3m",
    "1Ki",
    "",
    "abc",
    2**64 - 1,
    10**30,
    -1,
    0.25,
    1e308,
    True,
    None,
    [],
    {},
)
ANNOTATION_KEYS = (
    "phalanx.io/gang",
    "phalanx.io/gang-size",
    "phalanx.io/gang-timeout-seconds",
    "phalanx.io/required-level",
    "phalanx.io/preferred-level",
    "phalanx.io/nvlink-group",
    "phalanx.io/comm-intensity",
    "phalanx.io/queue",
    "phalanx.io/tenant",
    "phalanx.io/runtime-estimate-seconds",
    "phalanx.io/gang-key",
    "phalanx.io/gang-plan",
    "scheduling.k8s.io/group-name",
    "kueue.x-k8s.io/pod-group-total-count",
    "kueue.x-k8s.io/podset-required-topology",
)
LABEL_KEYS = ("scheduling.x-k8s.io/pod-group", "kueue.x-k8s.io/pod-group-name")
POD_PATHS: tuple[tuple[str, ...], ...] = (
    ("metadata",),
    ("metadata", "name"),
    ("metadata", "namespace"),
    ("metadata", "uid"),
    ("metadata", "labels"),
    ("metadata", "annotations"),
    ("metadata", "creationTimestamp"),
    ("spec",),
    ("spec", "nodeName"),
    ("spec", "priority"),
    ("spec", "containers"),
    ("spec", "initContainers"),
    ("spec", "tolerations"),
    ("spec", "nodeSelector"),
    ("spec", "affinity"),
    ("spec", "schedulingGroup"),
    ("status",),
    ("status", "phase"),
)
PHASES = ("Pending", "Running", "Succeeded", "Failed")


@dataclass
class FuzzRequest:
    """One HTTP request: what the in-process ASGI driver sends."""

    method: str
    path: str
    body: bytes = b""
    query: bytes = b""
    raw_path: bytes | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    chunks: int = 1
    """Split the body into this many ``http.request`` messages."""
    disconnect: bool = False
    """The client goes away after the first chunk."""
    verb: str = ""
    """``filter``, ``prioritize``, ``preempt``, ``bind`` or ``get``."""
    mutations: list[str] = field(default_factory=list)
    """What was done to the body, for reports and shrinking."""


def pick(draw: Draw, items: Sequence[T]) -> T:
    return items[draw(len(items))]


# ============================================================================ valid bodies
def seed_pod(draw: Draw, nodes: Sequence[str]) -> dict[str, Any]:
    """A pod of one of the gang sources, pending or (rarely) bound or finished."""
    name = pick(draw, POD_NAMES)
    gang = pick(draw, GANGS)
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    spec: dict[str, Any] = {"schedulerName": "default-scheduler"}
    source = draw(6)
    if source == 0:
        annotations.update({"phalanx.io/gang": gang, "phalanx.io/gang-size": str(1 + draw(3))})
    elif source == 1:
        annotations["scheduling.k8s.io/group-name"] = gang
    elif source == 2:
        labels["kueue.x-k8s.io/pod-group-name"] = gang
        annotations["kueue.x-k8s.io/pod-group-total-count"] = str(1 + draw(3))
    elif source == 3:
        labels["scheduling.x-k8s.io/pod-group"] = gang
    elif source == 4:
        spec["schedulingGroup"] = {"podGroupName": gang}
    gpus = pick(draw, ("1", "2", "4", "8"))
    spec["containers"] = [
        {
            "name": "worker",
            "image": "trainer:1",
            "resources": {
                "requests": {GPU: gpus, "cpu": "4", "memory": "32Gi"},
                "limits": {GPU: gpus},
            },
        }
    ]
    if draw(4) == 0:
        spec["priority"] = pick(draw, (0, 100, 1000))
    if draw(8) == 0:
        spec["tolerations"] = [{"operator": "Exists"}]
    if draw(8) == 0:
        spec["nodeSelector"] = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    if draw(10) == 0:
        spec["nodeName"] = pick(draw, nodes)
    phase = "Pending" if draw(8) else pick(draw, PHASES)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "uid": f"uid-{name}",
            "labels": labels,
            "annotations": annotations,
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": spec,
        "status": {"phase": phase},
    }


def seed_body(draw: Draw, verb: str, nodes: Sequence[str]) -> dict[str, Any]:
    """What kube-scheduler sends for ``verb``, valid."""
    offered = [n for n in nodes if draw(5)] or list(nodes)
    if verb in ("filter", "prioritize"):
        pod = seed_pod(draw, nodes)
        if draw(6) == 0:
            items = [{"metadata": {"name": n}, "status": {}} for n in offered]
            return {"Pod": pod, "Nodes": {"metadata": {}, "items": items}, "NodeNames": None}
        return {"Pod": pod, "Nodes": None, "NodeNames": offered}
    if verb == "preempt":
        pod = seed_pod(draw, nodes)
        victims = [pick(draw, POD_NAMES) for _ in range(draw(3))]
        if draw(2):
            meta = {
                n: {"Pods": [{"UID": f"uid-{v}"} for v in victims], "NumPDBViolations": draw(2)}
                for n in offered
            }
            return {"Pod": pod, "NodeNameToVictims": None, "NodeNameToMetaVictims": meta}
        full = {
            n: {
                "Pods": [{"metadata": {"name": v, "uid": f"uid-{v}"}} for v in victims],
                "NumPDBViolations": 0,
            }
            for n in offered
        }
        return {"Pod": pod, "NodeNameToVictims": full, "NodeNameToMetaVictims": None}
    name = pick(draw, POD_NAMES)
    return {
        "PodName": name,
        "PodNamespace": NAMESPACE,
        "PodUID": f"uid-{name}" if draw(4) else "",
        "Node": pick(draw, nodes),
    }


# ============================================================================ mutations
def hostile(draw: Draw) -> Any:
    """A fresh copy: the lists and objects among the values are mutated in place later."""
    return copy.deepcopy(pick(draw, HOSTILE_VALUES))


def _containers(doc: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) pair in the tree, for mutations at a random place."""
    found: list[tuple[Any, Any]] = []
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                found.append((node, key))
                stack.append(value)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                found.append((node, i))
                stack.append(value)
    return found


def _pod_of(doc: dict[str, Any]) -> dict[str, Any] | None:
    pod = doc.get("Pod")
    return pod if isinstance(pod, dict) else None


def _at(doc: Any, path: Sequence[str]) -> tuple[dict[str, Any] | None, str]:
    """The object holding the last key of ``path`` (created on the way where missing)."""
    node = doc
    for key in path[:-1]:
        if not isinstance(node, dict):
            return None, path[-1]
        nxt = node.get(key)
        if not isinstance(nxt, dict):
            nxt = node[key] = {}
        node = nxt
    return (node if isinstance(node, dict) else None), path[-1]


def mutate_tree(draw: Draw, doc: dict[str, Any]) -> str:
    """One change to the decoded body; returns what it did."""
    op = draw(10)
    pod = _pod_of(doc)
    if op <= 2 and pod is not None:
        return _mutate_pod(draw, pod)
    if op == 3:
        spots = _containers(doc)
        if spots:
            holder, key = pick(draw, spots)
            holder[key] = hostile(draw)
            return f"replace {key!r} anywhere"
    if op == 4:
        spots = [(h, k) for h, k in _containers(doc) if isinstance(h, dict)]
        if spots:
            holder, key = pick(draw, spots)
            del holder[key]
            return f"delete {key!r}"
    if op == 5 and doc:
        key = pick(draw, sorted(doc))
        doc[key.lower() if draw(2) else key.upper()] = hostile(draw)
        return f"duplicate {key!r} in another case"
    if op == 6 and doc:
        key = pick(draw, sorted(doc))
        doc[key] = hostile(draw)
        return f"top-level {key!r} replaced"
    if op == 7 and doc:
        key = pick(draw, sorted(doc))
        doc[key] = _DEEP_MARK
        return f"top-level {key!r} nested {DEEP} deep"
    if op == 8:
        doc[pick(draw, ("Unknown", "pod ", "NODENAMES", "\u00e9"))] = hostile(draw)
        return "extra key"
    if doc:
        del doc[pick(draw, sorted(doc))]
        return "top-level key missing"
    return "nothing"


def _mutate_pod(draw: Draw, pod: dict[str, Any]) -> str:
    op = draw(6)
    if op == 0:
        holder, key = _at(pod, pick(draw, POD_PATHS))
        if holder is not None:
            holder[key] = hostile(draw)
        return f"Pod.{key} replaced"
    if op == 1:
        kind = pick(draw, ("requests", "limits"))
        resource = pick(draw, (GPU, GPU, "cpu", "memory"))
        holder, _ = _at(pod, ("spec", "x"))
        containers = holder.get("containers") if holder is not None else None
        if not isinstance(containers, list) or not containers:
            containers = [{}]
            if holder is not None:
                holder["containers"] = containers
        container = containers[0] if isinstance(containers[0], dict) else {}
        res = container.setdefault("resources", {})
        if isinstance(res, dict):
            quantities = res.setdefault(kind, {})
            if isinstance(quantities, dict):
                quantities[resource] = copy.deepcopy(pick(draw, HOSTILE_QUANTITIES))
        return f"{resource} {kind} hostile"
    if op == 2:
        holder, _ = _at(pod, ("metadata", "x"))
        if holder is not None:
            holder["annotations"] = copy.deepcopy(
                pick(draw, ("ga", 3, ["ga"], None, True, _DEEP_MARK))
            )
        return "annotations not an object"
    if op == 3:
        holder, _ = _at(pod, ("metadata", "annotations", "x"))
        if holder is not None:
            holder[pick(draw, ANNOTATION_KEYS)] = _annotation_value(draw)
        return "annotation hostile"
    if op == 4:
        holder, _ = _at(pod, ("metadata", "labels", "x"))
        if holder is not None:
            holder[pick(draw, LABEL_KEYS)] = hostile(draw)
        return "label hostile"
    holder, _ = _at(pod, ("metadata", "annotations", "x"))
    if holder is not None:
        holder["phalanx.io/gang-plan"] = _forged_plan(draw)
        holder["phalanx.io/gang-key"] = f"{NAMESPACE}/{pick(draw, GANGS)}"
    spec, _ = _at(pod, ("spec", "x"))
    if spec is not None and draw(2):
        spec["nodeName"] = "h100-00000"
    return "forged gang plan"


def _annotation_value(draw: Draw) -> Any:
    value = hostile(draw)
    return value if draw(3) else str(value)


def _forged_plan(draw: Draw) -> str:
    """A ``phalanx.io/gang-plan`` as Phalanx writes it, with one field made hostile."""
    member = {
        "pod": pick(draw, POD_NAMES),
        "node": "h100-00000",
        "gpus": [0, 1],
        "gpuMilli": 1000,
        "cpuMilli": 4000,
        "memoryMiB": 32768,
        "rank": 0,
    }
    plan: dict[str, Any] = {"key": f"{NAMESPACE}/{pick(draw, GANGS)}", "members": [member]}
    target = draw(9)
    if target < 7:
        key = pick(draw, sorted(member))
        member[key] = pick(draw, (-1, 99, [5, 5], [-1], 2**64 - 1, "0", None, 1.5, [2**70]))
    elif target == 7:
        plan["key"] = pick(draw, ("ml/ga#²", "ml/ga#" + "9" * 5000, "ml/other", "", 3))
    else:
        return pick(draw, ("{", "[]", "null", '{"key": "ml/ga"}'))
    return _dumps(plan).decode("utf-8", "replace")


def mutate_bytes(draw: Draw, body: bytes) -> tuple[bytes, str]:
    """One change to the encoded body."""
    op = draw(8)
    at = draw(len(body) + 1)
    if op == 0:
        return body[:at], "truncated"
    if op == 1 and body:
        return body[:at] + bytes([draw(256)]) + body[at + 1 :], "byte replaced"
    if op == 2:
        bad = pick(draw, (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80"))
        quote = body.find(b'"', at)
        where = quote + 1 if quote >= 0 else at
        return body[:where] + bad + body[where:], "bad UTF-8"
    if op == 3:
        return b"\xef\xbb\xbf" + body, "byte order mark"
    if op == 4:
        return pick(draw, (b"", b"null", b"[]", b"0", b'"x"', b"{}", b"{" * DEEP)), "other body"
    if op == 5:
        return b"[" * DEEP + body + b"]" * DEEP, "whole body nested"
    if op == 6:
        return body + pick(draw, (b" ", b"}", b"\x00", b",{}")), "trailing bytes"
    return body[:at] + body[at:][: draw(64)] + body[at:], "chunk repeated"


# ============================================================================ requests
def request(draw: Draw, nodes: Sequence[str]) -> FuzzRequest:
    """One request: mostly a verb with a valid-then-mutated body, sometimes a GET."""
    if draw(8) == 0:
        return read_request(draw)
    verb = pick(draw, VERBS)
    doc = seed_body(draw, verb, nodes)
    done = [mutate_tree(draw, doc) for _ in range(pick(draw, (0, 0, 1, 1, 1, 2, 3)))]
    body = _dumps(doc)
    if draw(6) == 0:
        body, what = mutate_bytes(draw, body)
        done.append(what)
    req = FuzzRequest("POST", f"/{verb}", body, verb=verb, mutations=done)
    if draw(10) == 0:
        req.chunks = 2 + draw(3)
    if draw(40) == 0:
        req.disconnect = True
    if draw(20) == 0:
        req.headers.append((b"content-length", pick(draw, (b"99999999999999999999", b"-1", b"x"))))
    return req


def read_request(draw: Draw) -> FuzzRequest:
    """A request for a read-only endpoint, or for something that is not one."""
    path = pick(draw, (*READ_PATHS, *READ_PATHS, "/", "/debug", "/debug/state/", "/filter"))
    if draw(4) == 0:
        path += pick(draw, ("/x", "%00", "/../healthz", "\u00e9", "\ud800", "//", "/" * 200))
    method = pick(draw, ("GET", "GET", "GET", "HEAD", "DELETE", "PUT", "OPTIONS", "POST"))
    query = pick(
        draw,
        (
            b"",
            b"a=1",
            b"%ff%fe",
            b"\xff\xfe",
            b"x=" + b"%" * 100,
            b"&&&==",
            b"a=" + b"b" * 10000,
            b"pretty=true&verbose",
        ),
    )
    return FuzzRequest(
        method,
        path,
        b"" if draw(3) else b'{"x": 1}',
        query,
        raw_path=path.encode("utf-8", "surrogatepass"),
        verb="get",
        mutations=[f"{method} {path!r}?{query[:20]!r}"],
    )


def _dumps(doc: Any) -> bytes:
    """JSON as a careless client might write it: NaN and Infinity literals and integers beyond
    64 bits pass through (the stdlib writes them), the deep-nesting marker becomes
    ``DEEP`` nested lists."""
    text = json.dumps(doc, allow_nan=True, ensure_ascii=False)
    deep = "[" * DEEP + "1" + "]" * DEEP
    text = text.replace(json.dumps(_DEEP_MARK, ensure_ascii=False), deep)
    return text.encode("utf-8", "surrogatepass")
