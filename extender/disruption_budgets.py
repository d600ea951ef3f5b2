"""PodDisruptionBudgets as Phalanx's preemption reads them: which gangs it may not evict whole.

Phalanx evicts victim gangs through the Eviction API, which refuses a pod whose eviction would
take its budget below what it allows. Refused part way through a gang, that would leave the
victim partly evicted: the evicted pods gone, the rest running without their peers. So a gang
whose bound pods could not all be evicted now is no candidate at all (its running entry is
marked not evictable), decided from the budgets the watch keeps with the apiserver's own rules
(``pkg/registry/core/pod/storage/eviction.go``):

- a pod that is Pending, Succeeded, Failed or being deleted is evicted whatever the budgets
  (``canIgnorePDB``);
- a pod under more than one budget cannot be evicted at all;
- a pod that is not Ready passes without using the budget when the budget's
  ``unhealthyPodEvictionPolicy`` is ``AlwaysAllow``, or when it has as many healthy pods as it
  wants (``currentHealthy >= desiredHealthy > 0``);
- every other pod uses one of the budget's ``status.disruptionsAllowed``; a budget whose status
  is behind its generation allows none (``checkAndDecrement``).

A budget selects the pods of its namespace that its label selector matches (an empty selector
matches every pod of the namespace in ``policy/v1``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
IGNORED_PHASES = frozenset({"Pending", "Succeeded", "Failed"})
"""Pod phases whose eviction no budget limits."""
ALWAYS_ALLOW = "AlwaysAllow"


@dataclass(frozen=True)
class Budget:
    """One PodDisruptionBudget, reduced to what an eviction check reads."""

    namespace: str
    name: str
    match_labels: tuple[tuple[str, str], ...]
    match_expressions: tuple[tuple[str, str, frozenset[str]], ...]
    allowed: int
    """Evictions it allows now (0 while its status is behind its spec)."""
    unready_pass: bool = False
    """A pod that is not Ready is evicted without using ``allowed``."""

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Budget | None:
        """The budget of a ``policy/v1`` object; None when it cannot be read (a malformed
        selector protects nothing Phalanx can name, and the apiserver still has the last word
        on every eviction)."""
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        selector = spec.get("selector")
        if not isinstance(meta, Mapping) or not isinstance(selector, Mapping | None):
            return None
        selector = selector or {}
        labels = selector.get("matchLabels") or {}
        expressions = selector.get("matchExpressions") or []
        if not isinstance(labels, Mapping) or not isinstance(expressions, list):
            return None
        parsed = []
        for expr in expressions:
            if not isinstance(expr, Mapping) or expr.get("operator") not in _OPERATORS:
                return None
            values = expr.get("values") or []
            if not isinstance(values, list):
                return None
            parsed.append((str(expr.get("key", "")), expr["operator"], frozenset(map(str, values))))
        generation = _int(meta.get("generation"))
        observed = _int(status.get("observedGeneration"))
        allowed = _int(status.get("disruptionsAllowed")) if observed >= generation else 0
        desired = _int(status.get("desiredHealthy"))
        healthy_enough = desired > 0 and _int(status.get("currentHealthy")) >= desired
        return cls(
            str(meta.get("namespace", "")),
            str(meta.get("name", "")),
            tuple(sorted((str(k), str(v)) for k, v in labels.items())),
            tuple(parsed),
            max(allowed, 0),
            spec.get("unhealthyPodEvictionPolicy") == ALWAYS_ALLOW or healthy_enough,
        )

    def selects(self, labels: Mapping[str, str]) -> bool:
        """Does the budget's label selector match a pod with ``labels``?"""
        if any(labels.get(k) != v for k, v in self.match_labels):
            return False
        for key, op, values in self.match_expressions:
            present = key in labels
            if op == "In" and not (present and labels[key] in values):
                return False
            if op == "NotIn" and present and labels[key] in values:
                return False
            if op == "Exists" and not present:
                return False
            if op == "DoesNotExist" and present:
                return False
        return True


class DisruptionBudgets:
    """The watched budgets by namespace; fed by the watch thread, read under the planner's
    lock (its own lock keeps a replace from being seen half done)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_namespace: dict[str, dict[str, Budget]] = {}
        self.changes = 0
        """Counts every change: a cycle's answer depends on the budgets."""
        self._label_index: dict[str, dict[tuple[str, str] | None, list[Budget]]] = {}
        """Namespace -> budgets by their first ``matchLabels`` item (None: no matchLabels),
        built on first use after a change."""
        self._selecting: dict[tuple[str, frozenset], tuple[Budget, ...]] = {}
        """(namespace, label set) -> the budgets selecting such a pod, until a change: a gang's
        pods share their labels, so a namespace with many budgets is matched once per gang."""

    def __len__(self) -> int:
        return sum(len(budgets) for budgets in self._by_namespace.values())

    def replace(self, items: Iterable[Mapping[str, Any]]) -> None:
        fresh: dict[str, dict[str, Budget]] = {}
        for obj in items:
            budget = Budget.of(obj)
            if budget is not None:
                fresh.setdefault(budget.namespace, {})[budget.name] = budget
        with self._lock:
            self._by_namespace = fresh
            self.changes += 1
            self._selecting.clear()
            self._label_index.clear()

    def upsert(self, obj: Mapping[str, Any]) -> None:
        budget = Budget.of(obj)
        if budget is None:
            self.delete(obj)
            return
        with self._lock:
            self._by_namespace.setdefault(budget.namespace, {})[budget.name] = budget
            self.changes += 1
            self._selecting.clear()
            self._label_index.clear()

    def delete(self, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        with self._lock:
            budgets = self._by_namespace.get(str(meta.get("namespace", "")), {})
            budgets.pop(str(meta.get("name", "")), None)
            self.changes += 1
            self._selecting.clear()
            self._label_index.clear()

    def refusal(self, pods: Iterable[Mapping[str, Any]]) -> str:
        """Why evicting every one of ``pods``, one after another, would be refused now ('' when
        it would not): a pod under two budgets, or a budget more of them use than it allows."""
        used: dict[Budget, int] = {}
        with self._lock:
            for pod in pods:
                meta = pod.get("metadata") or {}
                status = pod.get("status") or {}
                if status.get("phase", "Pending") in IGNORED_PHASES or meta.get(
                    "deletionTimestamp"
                ):
                    continue
                namespace = meta.get("namespace", "")
                budgets = self._by_namespace.get(namespace)
                if not budgets:
                    continue
                labels = meta.get("labels") or {}
                key = (namespace, frozenset(labels.items()))
                under = self._selecting.get(key)
                if under is None:
                    under = self._select(namespace, budgets, labels)
                    self._selecting[key] = under
                if len(under) > 1:
                    names = ", ".join(sorted(b.name for b in under))
                    pod_name = meta.get("name")
                    return f"pod {pod_name} is under more than one PodDisruptionBudget ({names})"
                if not under or (under[0].unready_pass and not _ready(status)):
                    continue
                used[under[0]] = used.get(under[0], 0) + 1
        for budget, count in used.items():
            if count > budget.allowed:
                return (
                    f"PodDisruptionBudget {budget.namespace}/{budget.name} allows "
                    f"{budget.allowed} eviction(s), the gang has {count} pod(s) under it"
                )
        return ""

    def _select(
        self, namespace: str, budgets: dict[str, Budget], labels: Mapping[str, str]
    ) -> tuple[Budget, ...]:
        """The budgets of ``namespace`` selecting a pod with ``labels``, in name order. Only
        budgets that name one of the pod's labels in ``matchLabels``, or name none, are
        tested: most budgets select by a label of their own workload, so a namespace with
        many of them is not read whole for every pod."""
        index = self._label_index.get(namespace)
        if index is None:
            index = {}
            for budget in budgets.values():
                first = budget.match_labels[0] if budget.match_labels else None
                index.setdefault(first, []).append(budget)
            self._label_index[namespace] = index
        candidates = list(index.get(None, ()))
        for item in labels.items():
            candidates.extend(index.get(item, ()))
        return tuple(sorted((b for b in candidates if b.selects(labels)), key=lambda b: b.name))


def _ready(status: Mapping[str, Any]) -> bool:
    conditions = status.get("conditions") or ()
    return any(
        isinstance(c, Mapping) and c.get("type") == "Ready" and c.get("status") == "True"
        for c in conditions
    )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
