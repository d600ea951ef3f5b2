"""A fake kube-scheduler that drives an extender over HTTP the way the Go scheduler does."""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.fake_api_store import NODES, PODS

if TYPE_CHECKING:
    from tests.fake_apiserver import FakeApiServer


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
